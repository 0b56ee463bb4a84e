from stackbuild.cli import main

main()
