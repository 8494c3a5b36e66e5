"""An import-linter contract type the built-in ones cannot express: a private module
(a name starting with ``_``) is imported only from inside the package that holds it.

``protected`` contracts need one entry per module (a wildcard must replace a whole
name), so a new private module would go unguarded; this contract finds them all.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


def _owner(module: str) -> str | None:
    """The package a module is private to: the parent of its first ``_name`` segment."""
    parts = module.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


class PrivateModulesContract(Contract):
    """Every ``_private`` module under ``containers`` is imported only from its own package.

    Configuration options:
        - containers: the packages whose modules are checked.
    """

    type_name = "private_modules"

    containers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        illegal = []
        for container in self.containers:  # type: ignore[attr-defined]
            for imported in sorted(graph.find_descendants(container)):
                owner = _owner(imported)
                if owner is None:
                    continue
                for importer in sorted(graph.find_modules_that_directly_import(imported)):
                    if _inside(importer, owner):
                        continue
                    lines = [d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)]
                    illegal.append((importer, imported, owner, lines))
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for importer, imported, owner, lines in check.metadata["illegal"]:
            where = ", ".join(map(str, lines))
            output.print_error(f"- {importer} -> {imported} (l.{where}): private to {owner}", bold=False)
            output.new_line()
