"""XMP packets: IPTC `DigitalSourceType` and the creating tool.

Parsed with defusedxml, which refuses DTDs and entities (an XMP packet is XML, and XML can be a
billion-laughs bomb or fetch an external entity). Packet size is capped in `container`.
"""

from __future__ import annotations

from .findings import Finding, failure
from .png_chunks import software_finding

IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
XMP_BASIC = "http://ns.adobe.com/xap/1.0/"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
IPTC_TERMS = "http://cv.iptc.org/newscodes/digitalsourcetype/"

# IPTC Digital Source Type vocabulary (cv.iptc.org/newscodes/digitalsourcetype): what each term says.
SOURCE_TYPES = {
    "trainedAlgorithmicMedia": "ai",
    "algorithmicMedia": "ai",  # made by an algorithm without training data: not a photograph either
    "compositeWithTrainedAlgorithmicMedia": "ai_edited",
    "algorithmicallyEnhanced": "ai_edited",
    "compositeSynthetic": "ai_edited",
    "digitalCapture": "camera",
    "computationalCapture": "camera",  # phone HDR / night modes: still a capture of a scene
    "negativeFilm": "camera",
    "positiveFilm": "camera",
}


def source_type(value: str) -> tuple[str, str]:
    """(term, says) for a DigitalSourceType URI or bare term."""
    term = value.strip().rstrip("/").rsplit("/", 1)[-1]
    return term, SOURCE_TYPES.get(term, "unknown")


def read(packets: list[bytes]) -> list[Finding]:
    if not packets:
        return []
    try:
        from defusedxml import ElementTree
        from defusedxml.common import DefusedXmlException
    except ImportError:
        return [failure("xmp_digital_source_type", "defusedxml is not installed (pip install 'realjudge[provenance]')")]
    found: list[Finding] = []
    for packet in packets:
        try:
            root = ElementTree.fromstring(packet.strip(b"\0 \r\n\t"))
        except (DefusedXmlException, ElementTree.ParseError, ValueError) as err:
            found.append(failure("xmp", f"unreadable XMP packet ({type(err).__name__}: {err})"))
            continue
        found += _findings(root)
    return found


def _values(root, namespace: str, name: str) -> list[str]:
    """A property written either as an attribute of rdf:Description or as an element (possibly rdf:li items)."""
    tag = f"{{{namespace}}}{name}"
    out = []
    for el in root.iter():
        if tag in el.attrib:
            out.append(el.attrib[tag])
        if el.tag == tag:
            resource = el.attrib.get(f"{{{RDF}}}resource")
            text = resource or (el.text or "").strip() or " ".join((li.text or "").strip() for li in el.iter(f"{{{RDF}}}li"))
            if text.strip():
                out.append(text)
    return out


def _findings(root) -> list[Finding]:
    found = []
    for value in dict.fromkeys(_values(root, IPTC_EXT, "DigitalSourceType")):
        term, says = source_type(value)
        found.append(Finding("xmp_digital_source_type", says, "claim", {"digital_source_type": term, "uri": value[:200]}))
    for tool in dict.fromkeys(_values(root, XMP_BASIC, "CreatorTool")):
        found.append(software_finding(tool, "XMP CreatorTool"))
    return found
