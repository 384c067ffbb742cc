// C = op(A) · B for the randomized SVD of ΔW (Probity's spectral stage).
//
// A is stored row-major: M × K when trans_a == 0, K × M when trans_a == 1
// (then op(A) = Aᵀ); B is K × N and C is M × N, both row-major, f32.
// Each 16 × 16 workgroup computes one 16 × 16 tile of C, staging a tile of
// op(A) and of B in workgroup memory per step along K.

struct Dims {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

const TILE: u32 = 16u;

var<workgroup> tile_a: array<f32, 256>;
var<workgroup> tile_b: array<f32, 256>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    var acc: f32 = 0.0;
    let steps = (dims.k + TILE - 1u) / TILE;
    for (var t: u32 = 0u; t < steps; t = t + 1u) {
        let ka = t * TILE + lid.x;
        var va: f32 = 0.0;
        if (row < dims.m && ka < dims.k) {
            if (dims.trans_a == 0u) {
                va = a[row * dims.k + ka];
            } else {
                va = a[ka * dims.m + row];
            }
        }
        tile_a[lid.y * TILE + lid.x] = va;
        let kb = t * TILE + lid.y;
        var vb: f32 = 0.0;
        if (kb < dims.k && col < dims.n) {
            vb = b[kb * dims.n + col];
        }
        tile_b[lid.y * TILE + lid.x] = vb;
        workgroupBarrier();
        for (var i: u32 = 0u; i < TILE; i = i + 1u) {
            acc = acc + tile_a[lid.y * TILE + i] * tile_b[i * TILE + lid.x];
        }
        workgroupBarrier();
    }
    if (row < dims.m && col < dims.n) {
        c[row * dims.n + col] = acc;
    }
}
