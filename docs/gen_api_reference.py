"""Writes docs/api.md, the REST API reference, from docs/openapi.json (the document the coordinator
serves at /v1/openapi.json and schemathesis tests it against).

    python docs/gen_api_reference.py            # rewrite docs/api.md
    python docs/gen_api_reference.py --check    # exit 1 if docs/api.md is stale (a unit test runs this)
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ("get", "post", "put", "patch", "delete")


def anchor(name):
    return name.lower()


def type_of(schema):
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(type_of(s) for s in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"object of {type_of(schema['additionalProperties'])}"
    return kind


def constraints(schema):
    out = []
    lo, hi = schema.get("minimum"), schema.get("maximum")
    xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if any(v is not None for v in (lo, hi, xlo, xhi)):
        left = f"[{lo}" if lo is not None else f"({xlo}" if xlo is not None else "(-∞"
        right = f"{hi}]" if hi is not None else f"{xhi})" if xhi is not None else "∞)"
        out.append(f"{left}, {right}")
    if "minLength" in schema or "maxLength" in schema:
        out.append(f"length {schema.get('minLength', 0)}..{schema.get('maxLength', '∞')}")
    if "minItems" in schema or "maxItems" in schema:
        out.append(f"{schema.get('minItems', 0)}..{schema.get('maxItems', '∞')} items")
    if "enum" in schema:
        out.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    if "pattern" in schema:
        out.append(f"matches `{schema['pattern']}`")
    if "default" in schema:
        out.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(out)


def cell(text):
    return (text or "").replace("|", "\\|").replace("\n", " ")


def schema_section(name, schema):
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"], ""]
    if "properties" not in schema:
        lines += [f"{type_of(schema)}{': ' + constraints(schema) if constraints(schema) else ''}", ""]
        for key in ("anyOf", "oneOf"):
            for option in schema.get(key, []):
                lines.append(f"- {type_of(option)}{' — ' + constraints(option) if constraints(option) else ''}"
                             f"{' — ' + option['description'] if option.get('description') else ''}")
        return lines + [""]
    required = set(schema.get("required", []))
    lines += ["| field | type | required | constraints | description |", "| --- | --- | --- | --- | --- |"]
    for field, prop in schema["properties"].items():
        lines.append(f"| `{field}` | {cell(type_of(prop))} | {'yes' if field in required else ''} | "
                     f"{cell(constraints(prop))} | {cell(prop.get('description', ''))} |")
    if schema.get("additionalProperties") is False:
        lines += ["", "Unknown fields are refused (422, naming the field)."]
    return lines + [""]


def operation_section(path, method, op):
    lines = [f"### `{method.upper()} {path}`", "", op.get("summary", "")]
    if op.get("description"):
        lines += ["", op["description"]]
    lines.append("")
    if op.get("security") == []:
        lines += ["No token needed.", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | required | type | constraints | description |", "| --- | --- | --- | --- | --- | --- |"]
        for p in params:
            s = p.get("schema", {})
            lines.append(f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else ''} | {cell(type_of(s))} | "
                         f"{cell(constraints(s))} | {cell(p.get('description', ''))} |")
        lines.append("")
    body = op.get("requestBody")
    if body:
        for content_type, content in body.get("content", {}).items():
            lines.append(f"Request body (`{content_type}`): {type_of(content.get('schema', {}))}"
                         f"{' — ' + body['description'] if body.get('description') else ''}")
        lines.append("")
    lines += ["| status | meaning | body |", "| --- | --- | --- |"]
    for status, response in op.get("responses", {}).items():
        bodies = [f"`{ct}` {type_of(c.get('schema', {}))}" for ct, c in response.get("content", {}).items()]
        lines.append(f"| {status} | {cell(response.get('description', ''))} | {cell(', '.join(bodies))} |")
    return lines + [""]


def render(doc):
    info = doc["info"]
    lines = [f"# REST API reference ({info['title']} {info['version']})", "",
             "<!-- Generated by docs/gen_api_reference.py from docs/openapi.json; edit those, not this. -->", "",
             info.get("description", ""), ""]
    for name, scheme in doc.get("components", {}).get("securitySchemes", {}).items():
        lines += [f"**Authentication** ({name}): {scheme.get('description', scheme.get('type', ''))}", ""]
    lines += ["## Endpoints", "", "| method | path | what |", "| --- | --- | --- |"]
    operations = [(path, m, item[m]) for path, item in doc["paths"].items() for m in METHODS if m in item]
    for path, method, op in operations:
        lines.append(f"| {method.upper()} | [`{path}`](#{anchor(method + '-' + path).replace('/', '').replace('{', '').replace('}', '')}) | "
                     f"{cell(op.get('summary', ''))} |")
    lines.append("")
    for path, method, op in operations:
        section = operation_section(path, method, op)
        slug = anchor(method + "-" + path).replace("/", "").replace("{", "").replace("}", "")
        lines += [f'<a id="{slug}"></a>', ""] + section
    lines += ["## Schemas", ""]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        lines += schema_section(name, schema)
    return "\n".join(lines).rstrip() + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--openapi", default=os.path.join(HERE, "openapi.json"))
    parser.add_argument("--out", default=os.path.join(HERE, "api.md"))
    args = parser.parse_args()
    with open(args.openapi) as f:
        text = render(json.load(f))
    if args.check:
        current = open(args.out).read() if os.path.exists(args.out) else ""
        if current != text:
            print(f"{args.out} is stale: run python docs/gen_api_reference.py", file=sys.stderr)
            sys.exit(1)
        return
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
