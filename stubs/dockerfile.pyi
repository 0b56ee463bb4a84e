# Types of the `dockerfile` package (BuildKit's Dockerfile parser, a C extension that ships
# no stubs): the parts stackbuild/dockerfile.py uses.
from typing import NamedTuple

class Heredoc(NamedTuple):
    name: str
    file_descriptor: int
    content: str

class Command(NamedTuple):
    cmd: str  # "" for the empty command a lone escape at the end yields
    sub_cmd: str | None  # ONBUILD's instruction
    json: bool
    original: str
    start_line: int
    end_line: int
    flags: tuple[str, ...]
    value: tuple[str, ...]
    heredocs: tuple[Heredoc, ...]

class GoParseError(ValueError): ...
class GoIOError(OSError): ...

def parse_string(s: str) -> tuple[Command, ...]: ...
def parse_file(filename: str) -> tuple[Command, ...]: ...
def all_cmds() -> tuple[str, ...]: ...
