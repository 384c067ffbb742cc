// ΔW = W_suspect − W_base formed on the device from the raw safetensors
// words (f32, bf16 or f16, little-endian, two 16-bit values per u32 word),
// with per-workgroup partial reductions that the host adds up in f64.
//
// `form`:    delta[i] = s[i] − b[i]; partials[4g..4g+4] =
//            (Σ d, Σ d², max |d|, Σ b²) over workgroup g's elements.
// `moments`: partials[4g..4g+2] = (Σ x², Σ x⁴) with x = (d − mean) / scale,
//            the central moments for the kurtosis, scaled so that tiny
//            changes do not underflow in f32.
// Each workgroup of 256 threads covers 256 × ITEMS consecutive elements;
// workgroups are laid out in two dimensions (x up to `groups_x`).

struct Params {
    n: u32,
    // 0 = f32, 1 = bf16, 2 = f16, 3 = absent (reads as zero)
    s_dtype: u32,
    b_dtype: u32,
    groups_x: u32,
    mean: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> s_raw: array<u32>;
@group(0) @binding(1) var<storage, read> b_raw: array<u32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const WG: u32 = 256u;
const ITEMS: u32 = 16u;

var<workgroup> r0: array<f32, 256>;
var<workgroup> r1: array<f32, 256>;
var<workgroup> r2: array<f32, 256>;
var<workgroup> r3: array<f32, 256>;

fn half_bits(word: u32, i: u32) -> u32 {
    return (word >> ((i & 1u) * 16u)) & 0xffffu;
}

fn decode(word_lo: u32, dtype: u32, i: u32) -> f32 {
    switch dtype {
        case 0u: {
            return bitcast<f32>(word_lo);
        }
        case 1u: {
            return bitcast<f32>(half_bits(word_lo, i) << 16u);
        }
        case 2u: {
            let v = unpack2x16float(word_lo);
            return select(v.x, v.y, (i & 1u) == 1u);
        }
        default: {
            return 0.0;
        }
    }
}

fn load_s(i: u32) -> f32 {
    let d = params.s_dtype;
    if (d == 3u) {
        return 0.0;
    }
    if (d == 0u) {
        return decode(s_raw[i], d, i);
    }
    return decode(s_raw[i >> 1u], d, i);
}

fn load_b(i: u32) -> f32 {
    let d = params.b_dtype;
    if (d == 3u) {
        return 0.0;
    }
    if (d == 0u) {
        return decode(b_raw[i], d, i);
    }
    return decode(b_raw[i >> 1u], d, i);
}

fn group_index(wid: vec3<u32>) -> u32 {
    return wid.y * params.groups_x + wid.x;
}

// tree reduction of r0..r3 (sums for r0, r1, r3; max for r2)
fn reduce(t: u32) {
    for (var stride: u32 = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            r0[t] = r0[t] + r0[t + stride];
            r1[t] = r1[t] + r1[t + stride];
            r2[t] = max(r2[t], r2[t + stride]);
            r3[t] = r3[t] + r3[t + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256, 1, 1)
fn form(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let g = group_index(wid);
    let t = lid.x;
    var sum: f32 = 0.0;
    var sq: f32 = 0.0;
    var mx: f32 = 0.0;
    var bsq: f32 = 0.0;
    for (var j: u32 = 0u; j < ITEMS; j = j + 1u) {
        let i = g * WG * ITEMS + j * WG + t;
        if (i < params.n) {
            let b = load_b(i);
            let d = load_s(i) - b;
            delta[i] = d;
            sum = sum + d;
            sq = sq + d * d;
            mx = max(mx, abs(d));
            bsq = bsq + b * b;
        }
    }
    r0[t] = sum;
    r1[t] = sq;
    r2[t] = mx;
    r3[t] = bsq;
    workgroupBarrier();
    reduce(t);
    if (t == 0u) {
        partials[g * 4u] = r0[0];
        partials[g * 4u + 1u] = r1[0];
        partials[g * 4u + 2u] = r2[0];
        partials[g * 4u + 3u] = r3[0];
    }
}

@compute @workgroup_size(256, 1, 1)
fn moments(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let g = group_index(wid);
    let t = lid.x;
    var m2: f32 = 0.0;
    var m4: f32 = 0.0;
    for (var j: u32 = 0u; j < ITEMS; j = j + 1u) {
        let i = g * WG * ITEMS + j * WG + t;
        if (i < params.n) {
            let x = (delta[i] - params.mean) / params.scale;
            let x2 = x * x;
            m2 = m2 + x2;
            m4 = m4 + x2 * x2;
        }
    }
    r0[t] = m2;
    r1[t] = m4;
    r2[t] = 0.0;
    r3[t] = 0.0;
    workgroupBarrier();
    reduce(t);
    if (t == 0u) {
        partials[g * 4u] = r0[0];
        partials[g * 4u + 1u] = r1[0];
    }
}
