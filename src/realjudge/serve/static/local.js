"use strict";
// Scoring on this device: the image is decoded, preprocessed and scored in this browser with
// onnxruntime-web (WebAssembly, vendored under static/vendor), and never uploaded.
//
// Each step is the JavaScript twin of the Python one, so that both give the same record:
// - decoding: the browser's decoder; EXIF orientation applied, no colour-profile conversion, alpha
//   composited over white (realjudge.data.decode);
// - routing: both sides at most `small_side` px -> the small model, else the large one (Router.route);
// - views (realjudge.preprocess.InputPolicy): `resize` with PIL's resampling (Resample.c: separable,
//   horizontal then vertical, support scaled by the downscale factor, 22-bit fixed-point weights,
//   each pass rounded to 8 bits); `crop` with numpy's padding modes and crop_positions' grid
//   (np.linspace rounded half to even); test-time shifts (reflect) and mirrors in the same order;
// - normalisation (x / 255 - mean) / std in float32, NCHW; the mean of the view logits;
// - calibration (Calibration.probability) and the verdict rule with its uncertain band.
// The model's rules come from v1/models/{name}/browser and its graph from v1/models/{name}/model.onnx.

(function () {
  const PRECISION_BITS = 22;           // PIL's fixed-point weights for 8-bit images
  const ONE = 1 << PRECISION_BITS;
  const HALF = 1 << (PRECISION_BITS - 1);

  const specs = new Map();             // model name -> Promise of its browser spec
  const sessions = new Map();          // model name -> Promise of { session, queue }
  let ortPromise = null;

  class LocalError extends Error {}

  async function getJSON(url) {
    const resp = await fetch(url);
    if (!resp.ok) {
      let msg = `HTTP ${resp.status}`;
      try { msg = (await resp.json()).error || msg; } catch (_) { /* not JSON */ }
      throw new LocalError(msg);
    }
    return resp.json();
  }

  function cached(map, key, make) {
    if (!map.has(key)) {
      const p = make();
      map.set(key, p);
      p.catch(() => map.delete(key));  // a failure is retried next time
    }
    return map.get(key);
  }

  function spec(name) {
    return cached(specs, name, () => getJSON(`v1/models/${encodeURIComponent(name)}/browser`));
  }

  function loadOrt(runtime) {
    if (!ortPromise) {
      ortPromise = new Promise((ok, fail) => {
        if (window.ort) { ok(window.ort); return; }
        const script = document.createElement("script");
        script.src = runtime.script;
        script.onload = () => (window.ort ? ok(window.ort) : fail(new LocalError("onnxruntime-web did not load")));
        script.onerror = () => fail(new LocalError(`could not load ${runtime.script}`));
        document.head.append(script);
      }).then((ort) => {
        ort.env.wasm.numThreads = runtime.threads || 1;  // no workers, no cross-origin isolation needed
        ort.env.wasm.proxy = false;
        ort.env.wasm.wasmPaths = new URL(runtime.wasm_paths, document.baseURI).href;
        ort.env.logLevel = "error";
        return ort;
      });
      ortPromise.catch(() => { ortPromise = null; });
    }
    return ortPromise;
  }

  function session(s) {
    return cached(sessions, s.name, async () => {
      const ort = await loadOrt(s.runtime);
      const resp = await fetch(s.model.url);
      if (!resp.ok) {
        let msg = `HTTP ${resp.status}`;
        try { msg = (await resp.json()).error || msg; } catch (_) { /* not JSON */ }
        throw new LocalError(`no model for this device: ${msg}`);
      }
      const bytes = new Uint8Array(await resp.arrayBuffer());
      const sess = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
      return { ort, session: sess, queue: Promise.resolve() };
    });
  }

  // ------------------------------------------------------------------ decoding
  async function decode(blob, maxPixels) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none",
        imageOrientation: "from-image" });
    } catch (_) {
      throw new LocalError("not an image this browser can decode");
    }
    const w = bitmap.width, h = bitmap.height;
    if (!w || !h) { bitmap.close(); throw new LocalError("image has no pixels"); }
    if (maxPixels && w * h > maxPixels) {
      bitmap.close();
      throw new LocalError(`image too large (${w}x${h} = ${w * h} pixels; the limit is ${maxPixels})`);
    }
    const canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(w, h)
      : Object.assign(document.createElement("canvas"), { width: w, height: h });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.fillStyle = "#ffffff";          // transparent pixels over white, as the server's decoder does
    ctx.fillRect(0, 0, w, h);
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const rgba = ctx.getImageData(0, 0, w, h).data;
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
      rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
    }
    return { w, h, rgb };
  }

  // ------------------------------------------------------------------ PIL's resampling
  const FILTERS = {
    bicubic: { support: 2.0, f: (x) => {
      const a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    } },
    bilinear: { support: 1.0, f: (x) => { if (x < 0.0) x = -x; return x < 1.0 ? 1.0 - x : 0.0; } },
    box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
    lanczos: { support: 3.0, f: (x) => (-3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0) },
  };

  function sinc(x) {
    if (x === 0.0) return 1.0;
    x = x * Math.PI;
    return Math.sin(x) / x;
  }

  // precompute_coeffs + normalize_coeffs_8bpc: per output pixel, the first input pixel, the count,
  // and the fixed-point weights.
  function coeffs(inSize, outSize, filter) {
    const scale = inSize / outSize;
    const filterscale = scale < 1.0 ? 1.0 : scale;
    const support = filter.support * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const kk = new Int32Array(outSize * ksize);
    const k = new Float64Array(ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      let ww = 0.0;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      for (let x = 0; x < xmax; x++) {
        const w = filter.f((x + xmin - center + 0.5) * ss);
        k[x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) {
        const v = ww !== 0.0 ? k[x] / ww : k[x];
        kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize, bounds, kk };
  }

  function clip8(ss) {
    const v = Math.floor(ss / ONE);
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  // One pass of PIL's 8-bit resampling along x: `rows` rows from row `y0` of a w-wide RGB image.
  function horizontalPass(img, w, y0, rows, outW, c) {
    const out = new Uint8Array(outW * rows * 3);
    for (let yy = 0; yy < rows; yy++) {
      const rowIn = (yy + y0) * w * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = c.bounds[xx * 2], xmax = c.bounds[xx * 2 + 1], kb = xx * c.ksize;
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0; x < xmax; x++) {
          const kv = c.kk[kb + x], p = rowIn + (x + xmin) * 3;
          s0 += img[p] * kv; s1 += img[p + 1] * kv; s2 += img[p + 2] * kv;
        }
        const o = (yy * outW + xx) * 3;
        out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
      }
    }
    return out;
  }

  // ... and along y, on a w-wide image whose first row is source row `y0`.
  function verticalPass(img, w, y0, outH, c) {
    const out = new Uint8Array(w * outH * 3);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = c.bounds[yy * 2] - y0, ymax = c.bounds[yy * 2 + 1], kb = yy * c.ksize;
      for (let xx = 0; xx < w; xx++) {
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let y = 0; y < ymax; y++) {
          const kv = c.kk[kb + y], p = ((y + ymin) * w + xx) * 3;
          s0 += img[p] * kv; s1 += img[p + 1] * kv; s2 += img[p + 2] * kv;
        }
        const o = (yy * w + xx) * 3;
        out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2);
      }
    }
    return out;
  }

  // Image.resize((outW, outH), filter) of an RGB uint8 image, as ImagingResampleInner does it.
  // `order`: "horizontal_first" (older Pillow), or "vertical_first_if_height_shrinks_more" (newer
  // Pillow, 13.0 among them: the vertical pass goes first when the height shrinks by more than twice
  // as many pixels as the width); the server says which its Pillow does.
  const ORDERS = ["horizontal_first", "vertical_first_if_height_shrinks_more"];
  function resample(src, w, h, outW, outH, filterName, order) {
    const filter = FILTERS[filterName];
    if (!filter) throw new LocalError(`the resize filter ${filterName} is not implemented in the browser`);
    if (!ORDERS.includes(order)) throw new LocalError(`the server's Pillow resamples in an order the page does not know (${order})`);
    const needH = outW !== w, needV = outH !== h;
    if (!needH && !needV) return src.slice();
    const horizontalFirst = order !== "vertical_first_if_height_shrinks_more" || !((h - outH) > 0 && (h - outH) > (w - outW) * 2);
    const vert = needV || (needH && horizontalFirst) ? coeffs(h, outH, filter) : null;
    const hor = needH ? coeffs(w, outW, filter) : null;
    if (horizontalFirst) {
      let img = src, y0 = 0;
      if (needH) {  // only the rows the vertical pass reads
        y0 = vert.bounds[0];
        const rows = vert.bounds[outH * 2 - 2] + vert.bounds[outH * 2 - 1] - y0;
        img = horizontalPass(src, w, y0, rows, outW, hor);
      }
      return needV ? verticalPass(img, outW, y0, outH, vert) : img;
    }
    const img = needV ? verticalPass(src, w, 0, outH, vert) : src;
    return needH ? horizontalPass(img, w, 0, outH, outW, hor) : img;
  }

  // ------------------------------------------------------------------ views
  // numpy.pad's modes as index maps (the same for any pad width, checked against numpy).
  const PAD = {
    reflect: (i, n) => { if (n === 1) return 0; const p = 2 * (n - 1), m = ((i % p) + p) % p; return m >= n ? p - m : m; },
    symmetric: (i, n) => { const p = 2 * n, m = ((i % p) + p) % p; return m >= n ? p - 1 - m : m; },
    edge: (i, n) => Math.min(Math.max(i, 0), n - 1),
    wrap: (i, n) => ((i % n) + n) % n,
  };

  function roundHalfEven(x) {
    const f = Math.floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return f % 2 === 0 ? f : f + 1;
  }

  function linspaceRounded(stop, num) {  // np.linspace(0, stop, num).round().astype(int)
    if (num === 1) return [0];
    const step = stop / (num - 1);
    const out = [];
    for (let i = 0; i < num; i++) out.push(roundHalfEven(i === num - 1 ? stop : i * step));
    return out;
  }

  function cropPositions(h, w, s, n) {  // preprocess.crop_positions: (y, x) corners
    let cands;
    if (n > 5) {
      const g = Math.floor(Math.sqrt(n));
      const ys = linspaceRounded(h - s, g), xs = linspaceRounded(w - s, g);
      cands = [];
      for (const y of ys) for (const x of xs) cands.push([y, x]);
    } else {
      const cy = Math.floor((h - s) / 2), cx = Math.floor((w - s) / 2);
      cands = [[cy, cx], [0, 0], [0, w - s], [h - s, 0], [h - s, w - s]];
    }
    const out = [];
    for (const c of cands) {
      if (!out.some((o) => o[0] === c[0] && o[1] === c[1])) out.push(c);
      if (out.length === n) break;
    }
    return out;
  }

  function crop(img, W, y0, x0, s) {
    const v = new Uint8Array(s * s * 3);
    for (let y = 0; y < s; y++) v.set(img.subarray(((y0 + y) * W + x0) * 3, ((y0 + y) * W + x0 + s) * 3), y * s * 3);
    return v;
  }

  function shiftView(v, s, dx, dy) {  // preprocess.shift_views: a gather with reflection, x then y
    const src = (d) => Array.from({ length: s }, (_, i) => {
      const a = Math.abs(i - d);
      return a > s - 1 ? 2 * (s - 1) - a : a;
    });
    const sx = src(dx), sy = src(dy);
    const out = new Uint8Array(s * s * 3);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const i = (sy[y] * s + sx[x]) * 3, o = (y * s + x) * 3;
        out[o] = v[i]; out[o + 1] = v[i + 1]; out[o + 2] = v[i + 2];
      }
    }
    return out;
  }

  function mirrorView(v, s) {
    const out = new Uint8Array(s * s * 3);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const i = (y * s + (s - 1 - x)) * 3, o = (y * s + x) * 3;
        out[o] = v[i]; out[o + 1] = v[i + 1]; out[o + 2] = v[i + 2];
      }
    }
    return out;
  }

  function signed(v) { return v >= 0 ? `+${v}` : `${v}`; }

  // InputPolicy.views: the uint8 views (S x S x 3 each) and the note the record carries.
  function views(img, policy, order) {
    const { w, h, rgb } = img;
    const s = policy.size;
    let base, note;
    if (policy.kind === "resize") {
      if (w === s && h === s) { base = [rgb]; note = "none"; }
      else {
        base = [resample(rgb, w, h, s, s, policy.filter, order)];
        note = `resized ${w}x${h}->${s}x${s} (${policy.filter})`;
      }
    } else if (policy.kind === "crop") {
      let frame = rgb, H = h, W = w;
      const parts = [];
      if (h < s || w < s) {
        const map = PAD[policy.pad];
        if (!map) throw new LocalError(`the padding mode ${policy.pad} is not implemented in the browser`);
        const ph = Math.max(0, s - h), pw = Math.max(0, s - w), top = Math.floor(ph / 2), left = Math.floor(pw / 2);
        H = h + ph; W = w + pw;
        frame = new Uint8Array(H * W * 3);
        for (let y = 0; y < H; y++) {
          const sy = map(y - top, h);
          for (let x = 0; x < W; x++) {
            const i = (sy * w + map(x - left, w)) * 3, o = (y * W + x) * 3;
            frame[o] = rgb[i]; frame[o + 1] = rgb[i + 1]; frame[o + 2] = rgb[i + 2];
          }
        }
        parts.push(`padded ${w}x${h}->${W}x${H} (${policy.pad})`);
      }
      base = cropPositions(H, W, s, policy.crops).map(([y, x]) => crop(frame, W, y, x, s));
      parts.push(`${base.length} crop(s) of ${s}px, logits averaged`);
      note = parts.join("; ");
    } else {
      throw new LocalError(`unknown input policy ${policy.kind}`);
    }
    const shifts = policy.shifts || [];
    const added = [];
    if (shifts.length) {
      added.push(`${shifts.length} shifted cop${shifts.length > 1 ? "ies" : "y"} of each view ` +
        `(${shifts.map(([dx, dy]) => `${signed(dx)},${signed(dy)}px`).join(", ")}, reflect)`);
    }
    if (policy.mirror) added.push("mirrored views added");
    if (!added.length) return { views: base, note };
    // test_time_views: the batch, each shift of it, then the mirror of each of those.
    const groups = [base, ...shifts.map(([dx, dy]) => base.map((v) => shiftView(v, s, dx, dy)))];
    if (policy.mirror) groups.push(...groups.map((g) => g.map((v) => mirrorView(v, s))));
    note = (note === "none" ? added.join("; ") : `${note}; ${added.join("; ")}`) + ", logits averaged";
    return { views: groups.flat(), note };
  }

  function normalise(vs, policy) {  // N x S x S x 3 uint8 -> N x 3 x S x S float32
    const s = policy.size, plane = s * s;
    const out = new Float32Array(vs.length * 3 * plane);
    const mean = policy.mean.map(Math.fround), std = policy.std.map(Math.fround);
    for (let n = 0; n < vs.length; n++) {
      const v = vs[n], base = n * 3 * plane;
      for (let c = 0; c < 3; c++) {
        const m = mean[c], d = std[c], o = base + c * plane;
        for (let i = 0; i < plane; i++) out[o + i] = Math.fround(Math.fround(Math.fround(v[i * 3 + c] / 255) - m) / d);
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ calibration and verdict
  function probability(logit, cal) {
    let z = (logit - cal.offset) / cal.temperature;
    z = Math.min(60, Math.max(-60, z));
    return 1.0 / (1.0 + Math.exp(-z));
  }

  function verdict(p, threshold, cal) {
    const [lo, hi] = cal.uncertain_band;
    if (threshold === cal.threshold && lo < p && p < hi) return "uncertain";
    return p >= threshold ? "fake" : "real";
  }

  function route(routing, w, h) {
    if (routing.default) return routing.default;
    return Math.max(w, h) <= routing.small_side ? routing.small : routing.large;
  }

  function sizeWarnings(s, w, h) {  // Router.size_warnings
    const p = s.input_policy, small = s.routing.small_side;
    if (p.kind === "resize" && Math.max(w, h) > small) {
      return [`${s.name} judges ${p.size}x${p.size} images: this ${w}x${h} image was resized to ${p.size}x${p.size}, ` +
        `which erases the traces it looks for; its verdict on a larger image is not reliable (leave the model unset ` +
        `to route images larger than ${small} px to a natural-resolution detector)`];
    }
    return [];
  }

  async function run(s, vs) {
    const entry = await session(s);
    const size = s.input_policy.size;
    const input = new entry.ort.Tensor("float32", normalise(vs, s.input_policy), [vs.length, 3, size, size]);
    // One run at a time per session (the page scores two images at once).
    const result = entry.queue.then(() => entry.session.run({ [s.model.input]: input }));
    entry.queue = result.catch(() => undefined);
    const out = await result;
    return Array.from(out[s.model.output].data);
  }

  // The image's views for `model` (or the model its size picks), without scoring them.
  async function prepare(blob, model, routing, maxPixels) {
    const t0 = performance.now();
    const img = await decode(blob, maxPixels);
    const name = model || route(routing, img.w, img.h);
    const s = await spec(name);
    const v = views(img, s.input_policy, s.resize_filter && s.resize_filter.pass_order);
    return { spec: s, image: img, views: v.views, note: v.note, decodeMs: performance.now() - t0 };
  }

  const FORMATS = { "image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP",
    "image/bmp": "BMP", "image/avif": "AVIF", "image/tiff": "TIFF" };

  // A record like the server's (no provenance: the file's metadata is read on the server only).
  async function score(blob, model, routing, maxPixels) {
    const name = blob.name || "pasted image";
    let prep;
    try {
      prep = await prepare(blob, model, routing, maxPixels);
    } catch (err) {
      if (err instanceof LocalError) return { name, error: `${name}: ${err.message}`, scored_on: "device" };
      throw err;
    }
    const s = prep.spec;
    const t1 = performance.now();
    const logits = await run(s, prep.views);
    const modelMs = performance.now() - t1;
    const logit = logits.reduce((a, b) => a + b, 0) / logits.length;
    const cal = s.calibration;
    const p = probability(logit, cal);
    return {
      name, p_fake: p, verdict: verdict(p, s.threshold, cal), threshold: s.threshold, model: s.name, error: null,
      logit, preprocess: prep.note,
      facts: { format: FORMATS[blob.type] || null, width: prep.image.w, height: prep.image.h },
      provenance: null, provenance_verdict: null, warnings: sizeWarnings(s, prep.image.w, prep.image.h),
      scored_on: "device", device_timings: { decode_ms: prep.decodeMs, model_ms: modelMs, views: prep.views.length },
    };
  }

  // Fetch the rules, the runtime and the graphs ahead of the first image.
  async function warm(names) {
    await Promise.all(names.map(async (n) => session(await spec(n))));
  }

  window.RealjudgeLocal = { score, prepare, warm, decode, views, resample, cropPositions };
})();
