"""Custom operators from ``--operators`` folders, built-in components, and process assembly.

DI keeps a custom Python operator ``extract.users`` in the repository folder
``.../python3/operators/extract/users/`` with an ``operator.json`` (ports,
config defaults, ``script``), an optional ``configSchema.json`` and the script
plus helper modules. snapgraph looks each such component up in the
``--operators`` folders in order (first match wins).

:func:`assemble_process` is shared by both graph formats: it turns a component
id, the graph's port declarations and config into a :class:`Process`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapgraph.model.builtins import BUILTIN_COMPONENTS, BUILTINS
from snapgraph.model.graph import (
    PYTHON3_V2,
    Location,
    Port,
    Process,
    ScriptSource,
)
from snapgraph.model.problems import Problem
from snapgraph.model.types import ANY_PORT, DYNAMIC, TABLE, PortType
from snapgraph.model.vtypes import VTypeRegistry, load_vtype_files, port_type_from_json

FILE_PREFIX = "file://"
# Config keys DI does not expose through api.config.
HIDDEN_CONFIG_KEYS = ("script", "codelanguage", "$type")

_COMPONENT_ID = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


DYNAMIC_TABLE = PortType(TABLE, DYNAMIC)


def builtin_ports(component: str) -> tuple[dict[str, Port], dict[str, Port]]:
    """Default (inports, outports) of a built-in component (its descriptor's): dynamic *table* ports where
    the descriptor says so, *any* ports otherwise."""
    builtin = BUILTINS.get(component)
    if builtin is None:
        return {}, {}

    def port(name: str) -> Port:
        return Port(name, DYNAMIC_TABLE if name in builtin.table_ports else ANY_PORT)

    return {name: port(name) for name in builtin.inports}, {name: port(name) for name in builtin.outports}


def parse_ports(specs: Any, where: str, direction: str, problems: list[Problem]) -> dict[str, Port]:
    """Ports from a DI port list ``[{"name", "type", "vtype-ID"}, ...]``; bad entries become Problems."""
    ports: dict[str, Port] = {}
    if specs is None:
        return ports
    if not isinstance(specs, list):
        problems.append(Problem(where, f"{direction} must be a list of ports, got {type(specs).__name__}"))
        return ports
    for index, spec in enumerate(specs):
        if not isinstance(spec, dict):
            problems.append(Problem(where, f"{direction}[{index}] must be an object, got {spec!r}"))
            continue
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            problems.append(Problem(where, f"{direction}[{index}] has no name"))
            continue
        if name in ports:
            problems.append(Problem(where, f"port '{name}' is declared twice in {direction}"))
            continue
        try:
            port_type = port_type_from_json(spec)
        except ValueError as exc:
            problems.append(Problem(f"{where}, port '{name}'", str(exc)))
            port_type = ANY_PORT  # keep the port so its connections are not reported too
        ports[name] = Port(name, port_type)
    return ports


def read_script(
    value: Any, base_dir: Path, inline_name: str, where: str, problems: list[Problem], inline_first_line: int = 1
) -> ScriptSource | None:
    """The ScriptSource for a ``script`` config value.

    ``file://path`` reads ``path`` relative to ``base_dir`` (filename = the
    real absolute path, so tracebacks point at it); anything else is inline
    source named ``inline_name``, starting on its line ``inline_first_line``. Returns None (with a
    Problem) if unreadable.
    """
    if value is None:
        value = ""
    if not isinstance(value, str):
        problems.append(Problem(where, f"script must be a string, got {type(value).__name__}"))
        return None
    if value.startswith(FILE_PREFIX):
        relative = value[len(FILE_PREFIX):]
        file = Path(relative)
        if not file.is_absolute():
            file = base_dir / file
        file = file.resolve()
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(Problem(where, f"script file not found: {file} (from {value!r})"))
            return None
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(where, f"cannot read script file {file}: {exc}"))
            return None
        return ScriptSource(text, str(file))
    return ScriptSource(value, inline_name, inline_first_line)


@dataclass
class OperatorDef:
    """A custom operator read from ``<dir>/<pkg>/<name>/operator.json``."""

    component: str
    dir: Path
    inports: dict[str, Port] = field(default_factory=dict)
    outports: dict[str, Port] = field(default_factory=dict)
    # Config defaults (operator.json config + configSchema defaults), script keys removed.
    config: dict[str, Any] = field(default_factory=dict)
    script: ScriptSource | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # tags, iconsrc, versionStatus, ...


def _read_json(file: Path, what: str, problems: list[Problem]) -> Any | None:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(file), f"cannot read {what}: {exc.strerror or exc}"))
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(Problem(f"{file}:{exc.lineno}:{exc.colno}", f"invalid JSON in {what}: {exc.msg}"))
        return None


class OperatorsRepo:
    """Custom operators found in the ``--operators`` folders (first folder wins).

    Creating the repo also loads every ``*.vtype`` under those folders into
    ``registry`` and reports folders that do not exist.
    """

    def __init__(
        self,
        dirs: list[Path],
        registry: VTypeRegistry | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.registry = registry if registry is not None else VTypeRegistry()
        self.problems: list[Problem] = problems if problems is not None else []
        self._cache: dict[str, OperatorDef | None] = {}
        for folder in self.dirs:
            if not folder.is_dir():
                self.problems.append(Problem(str(folder), "operators directory does not exist"))
                continue
            load_vtype_files(folder, self.registry, self.problems, scope="global")

    def find_dir(self, component: str) -> Path | None:
        """The folder holding ``component``'s operator.json, or None if no folder has it."""
        if not _COMPONENT_ID.match(component):
            return None
        relative = Path(*component.split("."))
        for folder in self.dirs:
            candidate = folder / relative
            if (candidate / "operator.json").is_file():
                return candidate
        return None

    def searched(self, component: str) -> list[str]:
        """Where :meth:`find_dir` looked for ``component`` (for error messages)."""
        if not _COMPONENT_ID.match(component):
            return []
        relative = Path(*component.split("."), "operator.json")
        return [str(folder / relative) for folder in self.dirs]

    def load(self, component: str) -> OperatorDef | None:
        """The parsed operator, or None if it is missing or broken (broken adds Problems)."""
        if component in self._cache:
            return self._cache[component]
        folder = self.find_dir(component)
        result = None if folder is None else self._parse(component, folder)
        self._cache[component] = result
        return result

    def _parse(self, component: str, folder: Path) -> OperatorDef | None:
        problems = self.problems
        op_file = folder / "operator.json"
        before = len(problems)
        data = _read_json(op_file, "operator.json", problems)
        if data is None:
            return None
        where = str(op_file)
        if not isinstance(data, dict):
            problems.append(Problem(where, "operator.json must be a JSON object"))
            return None
        base = data.get("component")
        if base != PYTHON3_V2:
            problems.append(
                Problem(where, f"operator '{component}' has component {base!r}; snapgraph runs "
                        f"custom operators derived from {PYTHON3_V2} only")
            )
            return None
        inports = parse_ports(data.get("inports"), where, "inports", problems)
        outports = parse_ports(data.get("outports"), where, "outports", problems)
        config = data.get("config", {})
        if not isinstance(config, dict):
            problems.append(Problem(where, "config must be a JSON object"))
            return None
        config = dict(config)
        schema_file = folder / "configSchema.json"
        if schema_file.is_file():
            schema = _read_json(schema_file, "configSchema.json", problems)
            if isinstance(schema, dict):
                props = schema.get("properties")
                if isinstance(props, dict):
                    for key, prop in props.items():
                        if isinstance(prop, dict) and "default" in prop and key not in config:
                            config[key] = prop["default"]
            elif schema is not None:
                problems.append(Problem(str(schema_file), "configSchema.json must be a JSON object"))
        script = None
        if "script" in config:
            script = read_script(config["script"], folder, f"{op_file}::config.script", where, problems)
        for key in HIDDEN_CONFIG_KEYS:
            config.pop(key, None)
        if len(problems) > before:
            return None
        extra = {k: v for k, v in data.items()
                 if k not in ("component", "inports", "outports", "config", "description")}
        description = data.get("description", "")
        return OperatorDef(
            component=component,
            dir=folder.resolve(),
            inports=inports,
            outports=outports,
            config=config,
            script=script,
            description=description if isinstance(description, str) else "",
            extra=extra,
        )


def _merge_ports(*layers: dict[str, Port] | None) -> dict[str, Port]:
    merged: dict[str, Port] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


def unknown_component_message(component: str, repo: OperatorsRepo) -> str:
    """Why ``component`` could not be resolved, listing the folders searched."""
    if component == "com.sap.system.python3Operator" or component.endswith(".python3Operator"):
        return (f"component '{component}' is a Gen1 Python operator; snapgraph runs Gen2 graphs "
                f"only (use {PYTHON3_V2})")
    supported = ", ".join((PYTHON3_V2,) + BUILTIN_COMPONENTS)
    if component.startswith("com.sap."):
        return (f"unknown component '{component}': snapgraph supports the built-in components "
                f"{supported} and custom Python operators from --operators folders")
    searched = repo.searched(component)
    if not repo.dirs:
        where = "no --operators directory was given"
    elif searched:
        where = "searched " + ", ".join(searched)
    else:
        where = "not a valid operator id (expected dotted names like 'extract.users')"
    return (f"unknown component '{component}': not a built-in ({supported}) and not found in "
            f"the operators directories ({where})")


def assemble_process(
    name: str,
    component: str,
    location: Location,
    *,
    config: dict[str, Any],
    inports: dict[str, Port] | None,
    outports: dict[str, Port] | None,
    extra_inports: dict[str, Port] | None,
    extra_outports: dict[str, Port] | None,
    script_dir: Path,
    script_name: str,
    repo: OperatorsRepo,
    problems: list[Problem],
    script_first_line: int = 1,
) -> Process | None:
    """Build the Process for one graph node, or None if its component cannot be used.

    ``inports``/``outports`` are ports the graph declares as the full list
    (DI's process ``inports``), ``extra_*`` are ``additionalinports`` /
    ``additionaloutports`` added on top. ``config`` is the graph's process
    config; for custom operators it overlays the operator's defaults. A
    ``script`` in ``config`` overrides the operator's script; a ``file://``
    path is relative to ``script_dir`` for base Python processes and to the
    operator's folder for custom operators. ``script_name`` names inline code, whose first line is line
    ``script_first_line`` of that file.
    """
    where = str(location)
    config = dict(config)
    if component in BUILTINS:
        default_in, default_out = builtin_ports(component)
        if BUILTINS[component].declared_inports_replace_defaults and inports:
            default_in = {}
        for key in HIDDEN_CONFIG_KEYS:
            config.pop(key, None)
        return Process(
            name=name,
            component=component,
            config=config,
            inports=_merge_ports(default_in, inports, extra_inports),
            outports=_merge_ports(default_out, outports, extra_outports),
            script=None,
            location=location,
        )
    if component == PYTHON3_V2:
        script = read_script(config.get("script", ""), script_dir, script_name, where, problems, script_first_line)
        for key in HIDDEN_CONFIG_KEYS:
            config.pop(key, None)
        return Process(
            name=name,
            component=component,
            config=config,
            inports=_merge_ports(inports, extra_inports),
            outports=_merge_ports(outports, extra_outports),
            script=script or ScriptSource("", script_name),
            location=location,
        )
    if repo.find_dir(component) is None:
        problems.append(Problem(where, unknown_component_message(component, repo)))
        return None
    operator = repo.load(component)
    if operator is None:
        problems.append(Problem(where, f"custom operator '{component}' could not be loaded "
                                "(see the problems reported for its files)"))
        return None
    script = operator.script
    if "script" in config:
        script = read_script(config["script"], operator.dir, script_name, where, problems, script_first_line)
    if script is None:
        problems.append(Problem(where, f"custom operator '{component}' has no script "
                                "(operator.json config.script is missing)"))
        script = ScriptSource("", script_name)
    merged_config = dict(operator.config)
    merged_config.update(config)
    for key in HIDDEN_CONFIG_KEYS:
        merged_config.pop(key, None)
    return Process(
        name=name,
        component=component,
        config=merged_config,
        inports=_merge_ports(operator.inports, inports, extra_inports),
        outports=_merge_ports(operator.outports, outports, extra_outports),
        script=script,
        operator_dir=operator.dir,
        location=location,
    )
