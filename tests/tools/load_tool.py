"""Import a script from tools/ as a module, so tests can call its functions (tools/ is not a package)."""

import importlib.util
import os

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")


def load_tool(name: str):
    """``load_tool("demo")`` -> the module of tools/demo.py."""
    spec = importlib.util.spec_from_file_location(f"det_dcn_tools_{name}", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
