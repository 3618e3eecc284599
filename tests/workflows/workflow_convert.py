"""UI-format workflow (what the frontend saves) -> API-format prompt (what POST /prompt takes).

Follows the frontend's rules, read off a server's GET /object_info:
- an input is a widget when its type is INT, FLOAT, STRING, BOOLEAN, COMBO or a list of options and it is
  not `forceInput`; `widgets_values` holds the widgets' values in schema order (required, then optional);
- an INT (or COMBO) widget with `control_after_generate` (or, by the legacy convention, an INT named `seed`
  or `noise_seed` without the option) is followed by its control value ("fixed", "randomize", …), which is
  not part of the prompt;
- a linked input becomes [origin node id (string), origin slot];
- frontend-only nodes (notes, reroutes, primitives) and muted/bypassed nodes are left out.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_ACTIVE = 0


def input_specs(node_info: dict) -> list[tuple[str, list]]:
    """(name, spec) of every required then optional input, in the schema's order."""
    order = node_info.get("input_order") or {}
    specs = []
    for section in ("required", "optional"):
        section_inputs = node_info.get("input", {}).get(section) or {}
        for name in order.get(section, list(section_inputs)):
            specs.append((name, section_inputs[name]))
    return specs


def _options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec: list) -> bool:
    kind = spec[0]
    if _options(spec).get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def combo_options(spec: list) -> list | None:
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO":
        return _options(spec).get("options", [])
    return None


def has_control(name: str, spec: list) -> bool:
    """Whether the frontend adds a control_after_generate widget after this widget."""
    options = _options(spec)
    if spec[0] == "INT":
        flag = options.get("control_after_generate")
        return bool(flag) if flag is not None else name in ("seed", "noise_seed")
    return bool(combo_options(spec) is not None and options.get("control_after_generate"))


def widget_layout(node_info: dict) -> list[tuple[str, bool]]:
    """(input name, followed by a control value) for each widget, in widgets_values order."""
    return [(name, has_control(name, spec)) for name, spec in input_specs(node_info) if is_widget(spec)]


def widget_values(node: dict, node_info: dict) -> dict[str, object]:
    """{input name: value} from a UI node's widgets_values."""
    values = node.get("widgets_values")
    if isinstance(values, dict):
        return {name: values[name] for name, _ in widget_layout(node_info) if name in values}
    values = list(values or [])
    result, position = {}, 0
    for name, control in widget_layout(node_info):
        if position >= len(values):
            break
        result[name] = values[position]
        position += 1
        if control and position < len(values) and values[position] in CONTROL_VALUES:
            position += 1
    return result


class ConversionError(ValueError):
    pass


def to_api(workflow: dict, object_info: dict) -> dict[str, dict]:
    """The API-format prompt of a UI-format workflow; ConversionError on unknown node types."""
    links = {link[0]: link for link in workflow.get("links", [])}
    nodes = {node["id"]: node for node in workflow["nodes"]}
    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY or node.get("mode", MODE_ACTIVE) != MODE_ACTIVE:
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise ConversionError(f"node {node['id']}: unknown node type {node['type']!r}")
        inputs: dict[str, object] = dict(widget_values(node, info))
        for slot in node.get("inputs") or []:
            link_id = slot.get("link")
            if link_id is None:
                continue
            link = links.get(link_id)
            if link is None:
                raise ConversionError(f"node {node['id']}: input {slot['name']!r} names missing link {link_id}")
            origin = nodes.get(link[1])
            if origin is None or origin.get("mode", MODE_ACTIVE) != MODE_ACTIVE:
                raise ConversionError(f"node {node['id']}: input {slot['name']!r} comes from an inactive node")
            inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs,
                                   "_meta": {"title": node.get("title") or info.get("display_name", node["type"])}}
    return prompt
