"use strict";
// A small offline reader of the service's OpenAPI document: no CDN, no third-party UI.

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function resolveRef(doc, schema) {
  if (!schema || !schema.$ref) return schema;
  return schema.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o ? o[k] : undefined), doc);
}

function schemaText(doc, schema) {
  return JSON.stringify(resolveRef(doc, schema) || {}, (k, v) => (k === "$ref" ? undefined : v), 2);
}

function parameters(doc, op) {
  const params = op.parameters || [];
  if (!params.length) return null;
  const table = el("table", "params");
  const head = table.insertRow();
  for (const h of ["name", "in", "type", "description"]) head.append(el("th", "", h));
  for (const p of params) {
    const row = table.insertRow();
    const s = resolveRef(doc, p.schema) || {};
    const type = s.type || (s.anyOf || []).map((a) => a.type).filter(Boolean).join(" | ") || "";
    row.insertCell().textContent = p.name + (p.required ? " *" : "");
    row.insertCell().textContent = p.in;
    row.insertCell().textContent = type;
    row.insertCell().textContent = p.description || "";
  }
  return table;
}

function section(title, entries, doc) {
  const box = el("div", "api-block");
  box.append(el("h4", "", title));
  for (const [label, schema, description] of entries) {
    const d = el("details");
    d.append(el("summary", "", description ? `${label}: ${description}` : label));
    if (schema) d.append(el("pre", "", schemaText(doc, schema)));
    box.append(d);
  }
  return box;
}

function operation(doc, path, method, op) {
  const card = el("article", "card api-op");
  const head = el("h3");
  head.append(el("span", `method ${method}`, method.toUpperCase()), el("code", "", ` ${path}`));
  card.append(head);
  if (op.summary) card.append(el("p", "api-summary", op.summary));
  if (op.description) card.append(el("p", "api-desc", op.description));
  const params = parameters(doc, op);
  if (params) card.append(params);
  if (op.requestBody) {
    const content = Object.entries(op.requestBody.content || {}).map(([type, c]) => [type, c.schema]);
    card.append(section("Request body", content, doc));
  }
  const responses = Object.entries(op.responses || {}).map(([code, r]) => {
    const first = Object.values(r.content || {})[0];
    return [code, first ? first.schema : null, r.description];
  });
  card.append(section("Responses", responses, doc));
  return card;
}

async function render() {
  const root = document.getElementById("api");
  try {
    const resp = await fetch("openapi.json");
    const doc = await resp.json();
    const intro = el("p", "routing", `${doc.info.title} ${doc.info.version}. ${doc.info.description || ""}`);
    root.append(intro);
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) root.append(operation(doc, path, method, op));
    }
  } catch (err) {
    root.append(el("p", "status", `Could not load openapi.json: ${err.message}`));
  }
}

render();
