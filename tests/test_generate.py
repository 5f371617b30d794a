"""`realjudge generate`: the real diffusers pipeline code, end to end, on a tiny random pipeline
built here from configs (no download), plus the offline errors and the layout/manifest contracts."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
torch.set_num_threads(1)

from realjudge.cli import main  # noqa: E402
from realjudge.errors import UsageError  # noqa: E402
from realjudge.generate.layout import cifake_class, cifake_name  # noqa: E402
from realjudge.generate.manifest import COLUMNS, Manifest  # noqa: E402
from realjudge.generate.plan import aligned_batches, image_seed, plan_jobs  # noqa: E402
from realjudge.generate.prompts import CIFAR10_CLASSES, compose_prompt, load_templates  # noqa: E402

FAST = ["--per-class", "3", "--batch-size", "2", "--size", "16", "--steps", "2", "--device", "cpu", "--seed", "7",
        "--no-progress"]


def _byte_alphabet() -> list[str]:
    """CLIP's byte-level BPE alphabet: each byte as one printable character (the GPT-2 mapping)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}
    return [chars[b] for b in range(256)]


def build_tiny_pipeline(folder: Path) -> Path:
    """A randomly initialised Stable Diffusion pipeline, a few kB, saved like a hub snapshot."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=2, attention_head_dim=2)
    vae = AutoencoderKL(block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16,
                                                intermediate_size=32, num_attention_heads=2, num_hidden_layers=1,
                                                vocab_size=600, max_position_embeddings=77))
    vocab_dir = folder.parent / f"{folder.name}-vocab"
    vocab_dir.mkdir(parents=True)
    alphabet = _byte_alphabet()
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(c + "</w>" for c in alphabet)]
    (vocab_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab_file=str(vocab_dir / "vocab.json"), merges_file=str(vocab_dir / "merges.txt"),
                              model_max_length=77)
    scheduler = PNDMScheduler(skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd")


def invoke(*args: str):
    return CliRunner().invoke(main, ["generate", *args], catch_exceptions=False)


def read_manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generate_writes_cifake_layout_and_manifest(tiny_model, tmp_path):
    out = tmp_path / "set"
    res = invoke("--model", str(tiny_model), "--out", str(out), *FAST)
    assert res.exit_code == 0, res.output
    folder = out / "train" / "FAKE"
    expected = {cifake_name(i, k) for k in range(10) for i in range(3)}
    assert {p.name for p in folder.iterdir()} == expected
    assert {"0000.jpg", "0002 (2).jpg", "0001 (10).jpg"} <= expected
    with Image.open(folder / "0000 (4).jpg") as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (16, 16))
        assert any(lo != hi for lo, hi in im.getextrema())  # not blank: no safety checker, no NaN
    rows = read_manifest(out)
    assert tuple(rows[0]) == COLUMNS and len(rows) == 30
    by_path = {r["path"]: r for r in rows}
    row = by_path["train/FAKE/0001 (4).jpg"]
    assert row["class"] == "cat" and row["class_index"] == "3" and row["label"] == "fake"
    assert "cat" in row["prompt"] and row["seed"] == str(image_seed(7, "train", "cat", 1))
    assert (row["model"], row["generator"], row["revision"]) == (str(tiny_model), "tiny-sd", "")
    assert [row[c] for c in ("steps", "guidance", "size", "filter", "jpeg_quality")] == ["2", "7.5", "16", "lanczos", "75"]
    assert (row["scheduler"], row["dtype"], row["split"]) == ("PNDMScheduler", "float32", "train")
    assert len({r["seed"] for r in rows}) == 30


def test_resume_keeps_files_and_regenerates_identical_bytes(tiny_model, tmp_path):
    out = tmp_path / "set"
    assert invoke("--model", str(tiny_model), "--out", str(out), *FAST).exit_code == 0
    folder = out / "train" / "FAKE"
    before = {p.name: digest(p) for p in folder.iterdir()}
    manifest_before = (out / "manifest.csv").read_bytes()

    again = invoke("--model", str(tiny_model), "--out", str(out), *FAST)
    assert again.exit_code == 0 and "0 images generated, 30 already there" in again.output
    assert (out / "manifest.csv").read_bytes() == manifest_before

    (folder / "0001 (4).jpg").unlink()  # in a two-image batch: regenerated alongside its batch-mate
    (folder / "0002 (9).jpg").unlink()  # alone in its batch
    mtime = (folder / "0000 (4).jpg").stat().st_mtime_ns
    res = invoke("--model", str(tiny_model), "--out", str(out), *FAST)
    assert res.exit_code == 0 and "2 images generated, 28 already there" in res.output
    assert {p.name: digest(p) for p in folder.iterdir()} == before
    assert (folder / "0000 (4).jpg").stat().st_mtime_ns == mtime  # the batch-mate was not rewritten
    assert (out / "manifest.csv").read_bytes() == manifest_before  # no duplicated rows


def test_resume_repairs_a_manifest_cut_by_a_crash(tiny_model, tmp_path):
    out = tmp_path / "set"
    args = ["--model", str(tiny_model), "--out", str(out), "--per-class", "1", "--size", "8", "--steps", "2",
            "--device", "cpu", "--no-progress"]
    assert invoke(*args).exit_code == 0
    lines = (out / "manifest.csv").read_text().splitlines(keepends=True)
    # Lose the last row and tear the one before it, as a crash during a write would.
    (out / "manifest.csv").write_text("".join(lines[:-2]) + lines[-2][:15])
    res = invoke(*args)
    assert res.exit_code == 0 and "0 images generated, 10 already there (2 of them added to the manifest)" in res.output
    rows = read_manifest(out)
    assert len(rows) == 10 and len({r["path"] for r in rows}) == 10


def test_generated_fakes_and_exported_reals_open_as_one_labelled_source(tiny_model, tmp_path):
    import numpy as np
    from test_generate_cifar import LABEL_NAMES, dumps, make_batch, write_archive

    from realjudge.data.layouts import open_source

    rng = np.random.default_rng(0)
    members = {f"data_batch_{i}": dumps(make_batch(rng, 30, f"b{i}"), py2=True) for i in range(1, 6)}
    members["batches.meta"] = dumps({"label_names": LABEL_NAMES}, py2=True)
    archive = write_archive(tmp_path / "cifar.tar.gz", members)
    out = tmp_path / "set"
    assert invoke("--model", str(tiny_model), "--out", str(out), "--per-class", "1", "--size", "32", "--steps", "2",
                  "--device", "cpu", "--no-progress").exit_code == 0
    assert invoke("real", "--cifar10", str(archive), "--out", str(out), "--per-class", "1").exit_code == 0
    for layout in ("auto", "cifake"):  # auto reads OUT/manifest.csv; the CIFAKE folder rule agrees on every label
        samples = open_source(out, layout=layout)
        assert len(samples) == 20
        assert {(Path(s.locator).parent.name, s.label) for s in samples} == {("REAL", 0), ("FAKE", 1)}, layout
    fakes = [s for s in open_source(out) if s.label == 1]
    assert {s.generator for s in fakes} == {"tiny-sd"}
    assert sorted(s.meta["class"] for s in fakes) == sorted(CIFAR10_CLASSES)


def test_changed_settings_in_the_same_folder_are_refused(tiny_model, tmp_path):
    out = tmp_path / "set"
    base = ["--model", str(tiny_model), "--out", str(out), "--per-class", "1", "--size", "16", "--steps", "2",
            "--device", "cpu", "--no-progress"]
    assert invoke(*base).exit_code == 0
    res = invoke(*base, "--guidance", "3")
    assert res.exit_code == 2
    assert "guidance='7.5'" in res.stderr and "another --out" in res.stderr and "Traceback" not in res.output


def test_prompt_file_classes_file_and_png(tiny_model, tmp_path):
    (tmp_path / "classes.txt").write_text("# two of mine\nred apple\n\numbrella\n")
    (tmp_path / "prompts.txt").write_text("a studio photo of {a} {cls}\n{cls} on a table, {modifier}\n")
    out = tmp_path / "set"
    res = invoke("--model", str(tiny_model), "--out", str(out), "--classes", str(tmp_path / "classes.txt"),
                 "--prompts", str(tmp_path / "prompts.txt"), "--per-class", "2", "--size", "8", "--steps", "2",
                 "--format", "png", "--filter", "box", "--split", "test", "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (out / "test" / "FAKE").iterdir())
    assert names == ["0000 (2).png", "0000.png", "0001 (2).png", "0001.png"]
    rows = read_manifest(out)
    assert {r["class"] for r in rows} == {"red apple", "umbrella"}
    assert all(r["prompt"].startswith(("a studio photo of a", "a studio photo of an", r["class"] + " on a table, "))
               for r in rows)
    assert all(r["jpeg_quality"] == "" and r["filter"] == "box" and r["split"] == "test" for r in rows)


def test_model_found_in_the_local_hub_cache(tiny_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-sd"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    (tmp_path / "one.txt").write_text("ship\n")
    out = tmp_path / "set"
    res = invoke("--model", "someone/tiny-sd", "--out", str(out), "--classes", str(tmp_path / "one.txt"),
                 "--per-class", "1", "--size", "8", "--steps", "2", "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    [row] = read_manifest(out)
    assert (row["model"], row["generator"], row["revision"]) == ("someone/tiny-sd", "someone/tiny-sd", commit)


def test_unknown_hub_id_fails_offline_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "realjudge", "generate", "--model", "nobody/no-such-model",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("realjudge: error: --model nobody/no-such-model: not a local folder")
    assert str(tmp_path / "empty-cache") in lines[0] and "hf download nobody/no-such-model" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model, message", [("./missing-folder", "no such folder"),
                                            ("FILE", "single-file checkpoints are not supported"),
                                            ("DIR", "no model_index.json")])
def test_bad_model_paths(tmp_path, model, message):
    (tmp_path / "DIR").mkdir()
    (tmp_path / "FILE").write_bytes(b"x")
    model = str(tmp_path / model) if model in ("FILE", "DIR") else model
    res = invoke("--model", model, "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and message in res.stderr


def test_missing_generate_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    res = invoke("--out", str(tmp_path / "out"))
    assert res.exit_code == 2
    assert "pip install -e '.[generate]'" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_blank_images_are_reported_not_saved(tiny_model, tmp_path, monkeypatch):
    import realjudge.generate.diffusion as diffusion

    monkeypatch.setattr(diffusion, "load_pipeline", lambda *a: None)
    monkeypatch.setattr(diffusion, "_run_batch", lambda pipe, batch, s: [Image.new("RGB", (64, 64))] * len(batch))
    out = tmp_path / "set"
    res = invoke("--model", str(tiny_model), "--out", str(out), "--per-class", "1", "--device", "cpu", "--no-progress")
    assert res.exit_code == 1
    assert res.stderr.count("blank image") == 10
    assert not any((out / "train" / "FAKE").glob("*.jpg")) and len(read_manifest(out)) == 0


def test_cifake_names_match_the_published_set():
    # CIFAKE's own files: "0000.jpg" airplane, "0000 (2).jpg" automobile ... "0000 (10).jpg" truck.
    assert [cifake_name(0, k) for k in (0, 1, 9)] == ["0000.jpg", "0000 (2).jpg", "0000 (10).jpg"]
    assert [cifake_class(cifake_name(41, k)) for k in range(10)] == list(range(10))
    assert cifake_class("photo.jpg") is None and cifake_name(12345, 3, "png") == "12345 (4).png"


def test_plan_is_a_pure_function_of_its_inputs():
    templates = load_templates(None)
    a = plan_jobs(list(CIFAR10_CLASSES), 5, 3, "train", templates, "jpeg")
    assert a == plan_jobs(list(CIFAR10_CLASSES), 5, 3, "train", templates, "jpeg")
    test_seeds = {j.seed for j in plan_jobs(list(CIFAR10_CLASSES), 5, 3, "test", templates, "jpeg")}
    assert not test_seeds & {j.seed for j in a}  # one --seed for both splits never repeats an image
    # More images per class, or classes in another order, leave the existing images' seeds and prompts alone.
    b = {(j.cls, j.number): j for j in plan_jobs(list(reversed(CIFAR10_CLASSES)), 8, 3, "train", templates, "jpeg")}
    assert all((j.seed, j.prompt) == (b[j.cls, j.number].seed, b[j.cls, j.number].prompt) for j in a)
    assert compose_prompt(templates, "deer", 11) == compose_prompt(templates, "deer", 11)
    assert len({compose_prompt(templates, "deer", s) for s in range(50)}) > 10
    assert {len(batch) for batch in aligned_batches(a, 2)} == {2, 1}
    assert all(len({j.cls for j in batch}) == 1 for batch in aligned_batches(a, 4))


@pytest.mark.parametrize("template, message", [("a photo", "must contain {cls}"), ("{cls} {style}", "{style}"),
                                               ("{cls", "bad template")])
def test_bad_prompt_templates(tmp_path, template, message):
    (tmp_path / "p.txt").write_text(template + "\n")
    with pytest.raises(UsageError, match="line 1") as err:
        load_templates(str(tmp_path / "p.txt"))
    assert message in str(err.value)


def test_one_writer_per_manifest(tmp_path):
    with Manifest(tmp_path):
        with pytest.raises(UsageError, match="another run is writing"):
            Manifest(tmp_path).__enter__()


def test_device_and_dtype_choices():
    from realjudge.generate.pipeline import pick_device

    assert pick_device("cpu") == ("cpu", "float32")
    assert pick_device("cpu", "bfloat16") == ("cpu", "bfloat16")
    for device, dtype, message in [("cpu", "float16", "needs a GPU"), ("tpu", "auto", "--device must be"),
                                   ("cpu", "int8", "--dtype must be")]:
        with pytest.raises(UsageError, match=message):
            pick_device(device, dtype)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            pick_device("cuda:0")
