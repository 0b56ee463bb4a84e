"""stackbuild: build hierarchies of container images from one declarative manifest.

Data flow (one module per stage; everything left of ``plan`` is pure):

    stack.yaml -> manifest -> graph -> fingerprint -> plan -> scheduler -> backends
"""

__version__ = "0.1.0"
