"""The contracts a config knows: named ones, and the one each route carries.

In ``unwalled.yaml``::

    contracts:                       # named contracts, for the request header
      intent: examples/banking77/intent.contract.yaml
      short: {checks: [{max_chars: 280}, no_secrets]}
    # or: contracts: contracts/      (a folder of *.yaml files, named by 'name')
    routes:
      triage:
        targets: [local/smollm2-135m]
        contract: intent             # a name above, a file path, or a mapping

Paths are relative to the config file. Every contract is loaded and its checks
are built when the runtime starts, so a broken contract stops the start with
an error naming its file and place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unwalled.config import Config
from unwalled.contracts.grammar import schema_problem
from unwalled.contracts.model import Contract, load_contract, parse_contract
from unwalled.contracts.verifier import Verifier
from unwalled.errors import ConfigError, RequestError
from unwalled.shield import unmask

HEADER = "x-unwalled-contract"


class ContractBook:
    def __init__(self, config: Config) -> None:
        source = config.source
        self.base = Path(source).parent if Path(source).is_file() else Path(".")
        self.named: dict[str, Verifier] = {}
        self.by_route: dict[str, Verifier] = {}
        raw = getattr(config, "contracts", None)
        if isinstance(raw, str):
            self._folder(self.base / raw, source)
        elif isinstance(raw, dict):
            for name, value in raw.items():
                contract = self._resolve(value, source, f"contracts.{name}", name)
                self.named[name] = Verifier(contract)
        for route_name, route in config.routes.items():
            if route.contract is not None:
                self.by_route[route_name] = self._for_route(route.contract, source,
                                                            route_name)
        if any(b.type == "local" for b in config.backends.values()):
            self._try_grammars()
        if self.named or self.by_route:
            unmask.warm()  # the look-alike table, loaded now rather than at an answer

    def _try_grammars(self) -> None:
        """Turn each schema into a grammar now, at start, rather than on the
        event loop at a first request (the first try loads a vocabulary)."""
        for verifier in {id(v): v for v in [*self.named.values(),
                                            *self.by_route.values()]}.values():
            if verifier.contract.schema is not None:
                schema_problem(verifier.contract.schema)

    def _folder(self, folder: Path, source: str) -> None:
        if not folder.is_dir():
            raise ConfigError(f"contract folder {folder} does not exist.", file=source,
                              key="contracts",
                              fix="point it at a folder of contract YAML files, or "
                                  "list contracts by name.")
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            contract = load_contract(path)
            self.named[contract.name] = Verifier(contract)

    def _for_route(self, value: Any, source: str, route: str) -> Verifier:
        if isinstance(value, str) and value in self.named:
            return self.named[value]
        key = f"routes.{route}.contract"
        return Verifier(self._resolve(value, source, key, f"{route}-contract"))

    def _resolve(self, value: Any, source: str, key: str, name: str) -> Contract:
        if isinstance(value, str):
            path = self.base / value
            if not path.is_file():
                known = ", ".join(sorted(self.named)) or "none defined"
                raise ConfigError(f"{value!r} is neither a contract file nor a named "
                                  f"contract ({known}).", file=source, key=key,
                                  fix="give the path of a contract YAML file "
                                      "(relative to this config), a name under "
                                      "'contracts:', or the contract itself.")
            return load_contract(path)
        if isinstance(value, dict):
            return parse_contract(value, source=f"{source}: {key}", name=name)
        raise ConfigError("a contract is a file path, a name, or a mapping.",
                          file=source, key=key, fix="give one of those.")

    def for_request(self, route: str, header: str | None) -> Verifier | None:
        """The contract a request runs under: its route's, else the one its header
        names. A header cannot take a route's contract away: on a route with a
        contract it may only name that same contract."""
        ruling = self.by_route.get(route)
        if not header:
            return ruling
        name = header.strip()
        try:
            asked = self.named[name]
        except KeyError:
            known = ", ".join(sorted(self.named)) or "none"
            raise RequestError(f"the {HEADER} header names no known contract "
                               f"({name!r}). Known contracts: {known}.",
                               param=HEADER) from None
        if ruling is not None and asked is not ruling \
                and asked.contract.name != ruling.contract.name:
            raise RequestError(
                f"route {route!r} runs under contract {ruling.contract.name!r}, and "
                f"the {HEADER} header cannot replace it with {name!r}. Leave the "
                "header out, or call a route without a contract of its own to "
                "choose one per request.", param=HEADER)
        return asked
