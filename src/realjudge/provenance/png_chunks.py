"""Generator text chunks in PNG: AUTOMATIC1111 (and Forge, SD.Next), ComfyUI, InvokeAI, NovelAI, Fooocus.

Each tool writes its own keywords with Pillow's PngInfo, before IDAT. They are claims: any program
can write the same keywords into any PNG, and any re-save that drops text chunks removes them.
Only chunks `container.collect` found inside the PNG's structure (valid CRC, before IEND) get here.
"""

from __future__ import annotations

import json
import re

from .findings import Finding

PROMPT_CHARS = 2000
"""Prompts longer than this are cut, so a record stays small; real prompts are shorter."""

_A1111_SETTINGS = re.compile(r"(?:^|\n)Steps: \d+, (?:.*?)Sampler: ", re.S)
_A1111_FIELD = re.compile(r"(Model|Model hash|Version|Sampler|Steps|Size|Seed): ([^,\n]+)")
AI_SOFTWARE = ("novelai", "stable diffusion", "comfyui", "invokeai", "fooocus", "midjourney", "dall-e", "dall·e",
               "firefly", "imagen", "automatic1111", "stable-diffusion", "diffusers", "leonardo.ai", "ideogram")


def read(texts) -> list[Finding]:
    chunks = {t.key: t.value for t in texts}
    found: list[Finding] = []
    if "parameters" in chunks:
        found.append(_parameters(chunks["parameters"], "fooocus_scheme" in chunks))
    if "prompt" in chunks or "workflow" in chunks:
        found.append(_comfyui(chunks.get("prompt"), chunks.get("workflow")))
    for key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        if key in chunks:
            found.append(_invokeai(key, chunks[key]))
            break
    software = chunks.get("Software", "")
    if software.strip().lower().startswith("novelai"):
        found.append(_novelai(software, chunks))
    elif software:
        found.append(software_finding(software, "PNG Software chunk"))
    return found


def software_finding(name: str, where: str) -> Finding:
    """A Software / CreatorTool name: an AI tool's name is a claim; any other tool (an editor, a camera's firmware) says nothing."""
    low = name.lower()
    says, strength = ("ai", "claim") if any(a in low for a in AI_SOFTWARE) else ("unknown", "hint")
    return Finding("software", says, strength, {"software": name[:200], "where": where})


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= PROMPT_CHARS else text[:PROMPT_CHARS] + "..."


def _parameters(text: str, fooocus: bool) -> Finding:
    if fooocus:
        # Fooocus writes its parameters as JSON under `parameters` beside `fooocus_scheme`.
        data = _json(text)
        detail = {"generator": "Fooocus", "keyword": "parameters"}
        if isinstance(data, dict):
            detail |= {"model": data.get("base_model"), "prompt": _cut(str(data.get("prompt", "")) or None),
                       "version": data.get("version")}
        return Finding("png_parameters", "ai", "claim" if isinstance(data, dict) else "hint", detail)
    if not _A1111_SETTINGS.search(text):
        # The keyword without A1111's settings line: someone's own text under a popular name.
        return Finding("png_parameters", "unknown", "hint", {"keyword": "parameters", "note": "no generation settings line",
                                                             "text": _cut(text)})
    prompt, _, _ = text.partition("\nNegative prompt:")
    settings = text[text.rfind("Steps: "):]
    fields = dict(_A1111_FIELD.findall(settings))
    return Finding("png_parameters", "ai", "claim", {
        "generator": "AUTOMATIC1111-style (A1111, Forge, SD.Next)", "keyword": "parameters",
        "model": fields.get("Model"), "model_hash": fields.get("Model hash"), "version": fields.get("Version"),
        "sampler": fields.get("Sampler"), "steps": fields.get("Steps"), "size": fields.get("Size"),
        "prompt": _cut(prompt.split("\nSteps: ")[0].strip() or None)})


def _comfyui(prompt: str | None, workflow: str | None) -> Finding:
    graph = _json(prompt) if prompt else None
    ui = _json(workflow) if workflow else None
    if not isinstance(graph, dict) and not isinstance(ui, dict):
        return Finding("comfyui_workflow", "unknown", "hint", {"note": "`prompt`/`workflow` chunks that are not ComfyUI JSON"})
    nodes = [n for n in graph.values() if isinstance(n, dict)] if isinstance(graph, dict) else []
    if not nodes and isinstance(ui, dict) and isinstance(ui.get("nodes"), list):
        nodes = [{"class_type": n.get("type"), "inputs": {}} for n in ui["nodes"] if isinstance(n, dict)]
    classes = sorted({str(n.get("class_type")) for n in nodes if n.get("class_type")})
    models = sorted({str(v) for n in nodes if isinstance(n.get("inputs"), dict)
                     for k, v in n["inputs"].items() if k in ("ckpt_name", "unet_name", "model_name") and isinstance(v, str)})
    sampling = any("sampler" in c.lower() for c in classes)
    return Finding("comfyui_workflow", "ai" if sampling else "unknown", "claim" if sampling else "hint", {
        "generator": "ComfyUI", "keywords": [k for k, v in (("prompt", prompt), ("workflow", workflow)) if v],
        "nodes": len(nodes), "models": models[:10], "node_types": classes[:30]})


def _invokeai(key: str, text: str) -> Finding:
    data = _json(text)
    detail = {"generator": "InvokeAI", "keyword": key}
    if isinstance(data, dict):
        image = data.get("image") if isinstance(data.get("image"), dict) else data
        model = data.get("model")
        detail |= {"model": model.get("name") if isinstance(model, dict) else model,
                   "prompt": _cut(str(image.get("positive_prompt") or image.get("prompt") or "") or None),
                   "app_version": data.get("app_version")}
        return Finding("png_parameters", "ai", "claim", detail)
    if key == "Dream" and text.strip():  # InvokeAI 1.x wrote a command line, not JSON
        return Finding("png_parameters", "ai", "claim", detail | {"prompt": _cut(text)})
    return Finding("png_parameters", "unknown", "hint", detail | {"note": "not InvokeAI JSON"})


def _novelai(software: str, chunks: dict[str, str]) -> Finding:
    comment = _json(chunks.get("Comment", ""))
    detail = {"generator": "NovelAI", "software": software[:100], "source": chunks.get("Source"),
              "prompt": _cut(chunks.get("Description"))}
    if isinstance(comment, dict):
        detail |= {"steps": comment.get("steps"), "sampler": comment.get("sampler")}
    return Finding("png_parameters", "ai", "claim", detail)


def _json(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None
