//! The spectral stage on a GPU through wgpu (Vulkan, Metal, DX12 or GL,
//! headless): the products of the randomized SVD run in the tiled WGSL
//! matmul of `shaders/matmul.wgsl`, with ΔW resident on the device. Any
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
    /// Largest storage buffer binding, in bytes.
    pub max_binding: u64,
    /// e.g. `Vulkan`.
    pub backend: String,
    /// e.g. `llvmpipe (LLVM 15.0.6, 256 bits) (Cpu)`.
    pub adapter: String,
    errors: Arc<Mutex<Vec<String>>>,
}

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
            source: wgpu::ShaderSource::Wgsl(include_str!("../../../shaders/matmul.wgsl").into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("matmul"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let gpu = Gpu {
            max_binding: (limits.max_storage_buffer_binding_size as u64)
                .min(limits.max_buffer_size),
            backend: format!("{:?}", info.backend),
            adapter: format!("{} ({:?})", info.name, info.device_type),
            device,
            queue,
            pipeline,
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
            Err(format!(
                "GPU error: {}",
                e.drain(..).collect::<Vec<_>>().join("; ")
            ))
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
        let out: Vec<f32> = bytemuck::cast_slice(&view)[..m * n].to_vec();
        drop(view);
        read.unmap();
        Ok(out)
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
