//! The spectral stage on a GPU through wgpu (Vulkan, Metal, DX12 or GL,
//! headless): ΔW is formed on the device from the raw bf16 / f16 / f32
//! words of both models with its moments reduced there
//! (`shaders/delta.wgsl`), and the products of the randomized SVD run in
//! the tiled WGSL matmul of `shaders/matmul.wgsl`, with ΔW resident. Any
//! failure (no adapter, a device error, a matrix over the adapter's buffer
//! limit) is an `Err` the caller turns into a CPU fallback with a notice.

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::linalg::Products;

/// An adapter with the matmul pipeline ready.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    form: wgpu::ComputePipeline,
    moments: wgpu::ComputePipeline,
    /// Largest storage buffer binding, in bytes.
    pub max_binding: u64,
    /// e.g. `Vulkan`.
    pub backend: String,
    /// e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Cpu)`.
    pub adapter: String,
    errors: Arc<Mutex<Vec<String>>>,
}

/// How a raw tensor's words encode its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawDtype {
    F32,
    Bf16,
    F16,
}

impl RawDtype {
    fn code(self) -> u32 {
        match self {
            RawDtype::F32 => 0,
            RawDtype::Bf16 => 1,
            RawDtype::F16 => 2,
        }
    }
    fn width(self) -> usize {
        match self {
            RawDtype::F32 => 4,
            _ => 2,
        }
    }
}

/// Sums over ΔW's entries (and the base's), added up in f64 on the host.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: usize,
    /// Σ d
    pub sum: f64,
    /// Σ d²
    pub sum_sq: f64,
    /// max |d|
    pub max_abs: f64,
    /// Σ b² (the base's squared Frobenius norm)
    pub base_sum_sq: f64,
    /// Σ (d − mean)² / n and Σ (d − mean)⁴ / n
    pub m2: f64,
    pub m4: f64,
}

impl Moments {
    /// The same sums on the CPU (`base` empty: a zero base).
    pub fn cpu(delta: &[f32], base: &[f32]) -> Moments {
        let n = delta.len();
        let (mut sum, mut sum_sq, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
        for &x in delta {
            let x = x as f64;
            sum += x;
            sum_sq += x * x;
            max_abs = max_abs.max(x.abs());
        }
        let base_sum_sq = base.iter().map(|&b| (b as f64) * (b as f64)).sum();
        let mean = sum / n.max(1) as f64;
        let (mut m2, mut m4) = (0.0, 0.0);
        for &x in delta {
            let d = x as f64 - mean;
            m2 += d * d;
            m4 += d * d * d * d;
        }
        Moments {
            n,
            sum,
            sum_sq,
            max_abs,
            base_sum_sq,
            m2: m2 / n.max(1) as f64,
            m4: m4 / n.max(1) as f64,
        }
    }

    /// Excess kurtosis of the entries (0 for a constant).
    pub fn kurtosis(&self) -> f64 {
        if self.m2 > 0.0 {
            self.m4 / (self.m2 * self.m2) - 3.0
        } else {
            0.0
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct DeltaParams {
    n: u32,
    s_dtype: u32,
    b_dtype: u32,
    groups_x: u32,
    mean: f32,
    scale: f32,
    _pad: [u32; 2],
}

/// Elements per workgroup of `delta.wgsl` (256 threads × 16).
const DELTA_CHUNK: usize = 256 * 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
}

impl Gpu {
    /// The adapter wgpu picks (honouring `WGPU_BACKEND`, `WGPU_ADAPTER_NAME`,
    /// `WGPU_POWER_PREF`), with the matmul shader compiled.
    pub fn new() -> Result<Self, String> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter =
            pollster::block_on(
                instance.request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                }),
            )
            .map_err(|e| format!("no GPU adapter: {e}"))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("probity-spectral"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| format!("GPU device request failed: {e}"))?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("matmul.wgsl"),
            source: wgpu::ShaderSource::Wgsl(
                include_str!("../../../../shaders/matmul.wgsl").into(),
            ),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("matmul"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let dmodule = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("delta.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../../../shaders/delta.wgsl").into()),
        });
        let entry = |name: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &dmodule,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let (form, moments) = (entry("form"), entry("moments"));
        let gpu = Gpu {
            max_binding: (limits.max_storage_buffer_binding_size as u64)
                .min(limits.max_buffer_size),
            backend: format!("{:?}", info.backend),
            adapter: format!("{} ({:?})", info.name, info.device_type),
            device,
            queue,
            pipeline,
            form,
            moments,
            errors,
        };
        gpu.check()?;
        Ok(gpu)
    }

    fn check(&self) -> Result<(), String> {
        let mut e = self.errors.lock().map_err(|e| e.to_string())?;
        if e.is_empty() {
            Ok(())
        } else {
            // one line: wgpu's messages span several
            let text = e
                .drain(..)
                .collect::<Vec<_>>()
                .join("; ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            Err(format!("GPU error: {text}"))
        }
    }

    /// Uploads a row-major matrix; `Err` when it exceeds the adapter's
    /// buffer limit.
    pub fn upload(&self, data: &[f32]) -> Result<wgpu::Buffer, String> {
        let bytes = std::mem::size_of_val(data) as u64;
        if bytes > self.max_binding {
            return Err(format!(
                "{bytes} bytes exceed the adapter's storage-buffer limit of {}",
                self.max_binding
            ));
        }
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE,
            });
        self.check()?;
        Ok(buf)
    }

    /// op(A) · B where A is resident (`m × k`, or `k × m` with `trans_a`)
    /// and B (`k × n`) is uploaded; returns C (`m × n`).
    pub fn matmul(
        &self,
        a: &wgpu::Buffer,
        m: usize,
        k: usize,
        trans_a: bool,
        b: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, String> {
        if b.len() != k * n {
            return Err(format!("B has {} values, expected {k}×{n}", b.len()));
        }
        let out_bytes = (m * n * 4) as u64;
        if out_bytes > self.max_binding || (b.len() * 4) as u64 > self.max_binding {
            return Err("operand exceeds the adapter's storage-buffer limit".into());
        }
        let groups_y = m.div_ceil(16);
        let groups_x = n.div_ceil(16);
        if groups_y > 65_535 || groups_x > 65_535 {
            return Err(format!(
                "{m}×{n} needs more workgroups than one dispatch allows"
            ));
        }
        let dev = &self.device;
        let b_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(b),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let c_buf = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: out_bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let dims = Dims {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            trans_a: trans_a as u32,
        };
        let d_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::bytes_of(&dims),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: out_bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: a.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: c_buf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: d_buf.as_entire_binding(),
                },
            ],
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups_x as u32, groups_y as u32, 1);
        }
        enc.copy_buffer_to_buffer(&c_buf, 0, &read, 0, out_bytes.max(4));
        self.queue.submit([enc.finish()]);
        let out = self.read_back(&read)?;
        Ok(out[..m * n].to_vec())
    }

    /// Waits for the queue and maps a `MAP_READ` buffer back as f32s.
    fn read_back(&self, read: &wgpu::Buffer) -> Result<Vec<f32>, String> {
        let dev = &self.device;
        let slice = read.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        dev.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: None,
        })
        .map_err(|e| format!("GPU poll failed: {e}"))?;
        rx.recv()
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("GPU readback failed: {e}"))?;
        self.check()?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| format!("GPU readback failed: {e}"))?;
        let out: Vec<f32> = bytemuck::cast_slice(&view).to_vec();
        drop(view);
        read.unmap();
        Ok(out)
    }

    /// Uploads raw little-endian words (padded to a multiple of 4 bytes).
    fn upload_raw(&self, bytes: &[u8]) -> Result<wgpu::Buffer, String> {
        if bytes.len() as u64 > self.max_binding {
            return Err(format!(
                "{} bytes exceed the adapter's storage-buffer limit of {}",
                bytes.len(),
                self.max_binding
            ));
        }
        let padded;
        let contents = if bytes.len().is_multiple_of(4) && !bytes.is_empty() {
            bytes
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
            padded = v;
            &padded
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents,
                usage: wgpu::BufferUsages::STORAGE,
            }))
    }

    /// Forms ΔW = S − B on the device from the raw tensors (`base` `None`:
    /// ΔW = S, the base-free analysis of the weights themselves) and reduces
    /// its moments there; ΔW stays resident for the SVD.
    pub fn form_delta(
        &self,
        suspect: (&[u8], RawDtype),
        base: Option<(&[u8], RawDtype)>,
        n: usize,
    ) -> Result<(wgpu::Buffer, Moments), String> {
        if suspect.0.len() != n * suspect.1.width()
            || base.is_some_and(|(b, d)| b.len() != n * d.width())
        {
            return Err("raw tensor size does not match its element count".into());
        }
        if n == 0 || n > u32::MAX as usize {
            return Err(format!("{n} elements cannot be formed on the GPU"));
        }
        let out_bytes = (n * 4) as u64;
        if out_bytes > self.max_binding {
            return Err(format!(
                "{out_bytes} bytes exceed the adapter's storage-buffer limit of {}",
                self.max_binding
            ));
        }
        let groups = n.div_ceil(DELTA_CHUNK);
        let groups_x = groups.min(65_535);
        let groups_y = groups.div_ceil(groups_x);
        if groups_y > 65_535 {
            return Err(format!("{n} elements need too many workgroups"));
        }
        let dev = &self.device;
        let s_buf = self.upload_raw(suspect.0)?;
        let b_buf = match base {
            Some((b, _)) => self.upload_raw(b)?,
            None => self.upload_raw(&[0u8; 4])?,
        };
        let delta = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("delta"),
            size: out_bytes,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        // one slot of 4 per workgroup of the 2-D grid (the tail is zero)
        let p_bytes = (groups_x * groups_y * 4 * 4) as u64;
        let partials = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("partials"),
            size: p_bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: p_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut params = DeltaParams {
            n: n as u32,
            s_dtype: suspect.1.code(),
            b_dtype: base.map_or(3, |(_, d)| d.code()),
            groups_x: groups_x as u32,
            mean: 0.0,
            scale: 1.0,
            _pad: [0; 2],
        };
        let run = |pipeline: &wgpu::ComputePipeline,
                   params: &DeltaParams,
                   with_raw: bool|
         -> Result<Vec<f32>, String> {
            let p_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let mut entries = vec![
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: delta.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: partials.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: p_buf.as_entire_binding(),
                },
            ];
            if with_raw {
                entries.push(wgpu::BindGroupEntry {
                    binding: 0,
                    resource: s_buf.as_entire_binding(),
                });
                entries.push(wgpu::BindGroupEntry {
                    binding: 1,
                    resource: b_buf.as_entire_binding(),
                });
            }
            let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            let mut enc =
                dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.clear_buffer(&partials, 0, None);
            {
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(groups_x as u32, groups_y as u32, 1);
            }
            enc.copy_buffer_to_buffer(&partials, 0, &read, 0, p_bytes);
            self.queue.submit([enc.finish()]);
            self.read_back(&read)
        };
        let first = run(&self.form, &params, true)?;
        let mut m = Moments {
            n,
            ..Default::default()
        };
        for p in first.chunks_exact(4) {
            m.sum += p[0] as f64;
            m.sum_sq += p[1] as f64;
            m.max_abs = m.max_abs.max(p[2] as f64);
            m.base_sum_sq += p[3] as f64;
        }
        let mean = m.sum / n as f64;
        if m.max_abs > 0.0 {
            let scale = m.max_abs;
            params.mean = mean as f32;
            params.scale = scale as f32;
            let second = run(&self.moments, &params, false)?;
            let (mut m2, mut m4) = (0.0f64, 0.0f64);
            for p in second.chunks_exact(4) {
                m2 += p[0] as f64;
                m4 += p[1] as f64;
            }
            m.m2 = m2 / n as f64 * scale * scale;
            m.m4 = m4 / n as f64 * scale.powi(4);
        }
        self.check()?;
        Ok((delta, m))
    }
}

/// A matrix resident on the GPU.
pub struct GpuProducts<'g> {
    gpu: &'g Gpu,
    a: wgpu::Buffer,
    rows: usize,
    cols: usize,
}

impl<'g> GpuProducts<'g> {
    pub fn new(gpu: &'g Gpu, a: &[f32], rows: usize, cols: usize) -> Result<Self, String> {
        Ok(GpuProducts {
            a: gpu.upload(a)?,
            gpu,
            rows,
            cols,
        })
    }

    /// A matrix already on the device (e.g. from [`Gpu::form_delta`]).
    pub fn resident(gpu: &'g Gpu, a: wgpu::Buffer, rows: usize, cols: usize) -> Self {
        GpuProducts { gpu, a, rows, cols }
    }
}

impl Products for GpuProducts<'_> {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
    fn a_x(&mut self, x: &[f32], l: usize) -> Result<Vec<f32>, String> {
        self.gpu.matmul(&self.a, self.rows, self.cols, false, x, l)
    }
    fn at_y(&mut self, y: &[f32], l: usize) -> Result<Vec<f32>, String> {
        self.gpu.matmul(&self.a, self.cols, self.rows, true, y, l)
    }
}
