//! The worker side: `probity __worker` reads the policy, restricts itself, then
//! serves requests on stdin/stdout. It must stay single-threaded until the
//! restrictions are in place (Landlock applies to the calling thread only).

use std::io::{Read, Write};

use super::protocol::{recv, send};
use super::sandbox::{self, DeviceKind};
use crate::models::bert::BertClassifier;
use candle_core::Tensor;

use crate::models::{
    greedy_rows, left_pad, log_softmax_rows, shared_prefix_len, Arch, KvCache, LoadedModel,
};
use crate::wire::{Comparison, Probe, Request, Response, Role, PROTOCOL_VERSION};

/// Entry point of the hidden `__worker` subcommand; returns the exit code.
pub fn main() -> i32 {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = stdin.lock();
    let mut output = stdout.lock();
    let policy = match recv::<Request>(&mut input) {
        Ok(Some(Request::Init { version, policy })) if version == PROTOCOL_VERSION => policy,
        Ok(Some(Request::Init { version, .. })) => {
            let _ = send(
                &mut output,
                &Response::Error(format!(
                    "protocol version {version}, worker speaks {PROTOCOL_VERSION}"
                )),
            );
            return 2;
        }
        Ok(_) => {
            let _ = send(
                &mut output,
                &Response::Error("first message must be Init".into()),
            );
            return 2;
        }
        Err(e) => {
            eprintln!("probity worker: {e}");
            return 2;
        }
    };
    let isolation = sandbox::apply(&policy);
    if send(
        &mut output,
        &Response::Ready {
            version: PROTOCOL_VERSION,
            isolation,
        },
    )
    .is_err()
    {
        return 2;
    }
    let mut models = Models::default();
    loop {
        let req = match recv::<Request>(&mut input) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                let _ = send(&mut output, &Response::Error(format!("bad request: {e}")));
                return 2;
            }
        };
        let resp = match req {
            Request::Shutdown => {
                let _ = send(&mut output, &Response::Bye);
                return 0;
            }
            Request::Init { .. } => Response::Error("already initialised".into()),
            Request::SelfTest(p) => probe(p),
            Request::Load {
                role,
                dir,
                device,
                allow_pickle_weights,
            } => models.load(role, &dir, device, allow_pickle_weights),
            Request::Compare {
                prompt,
                max_new_tokens,
            } => models.compare(&prompt, max_new_tokens),
            Request::CompareBatch {
                prompts,
                max_new_tokens,
            } => models.compare_batch(&prompts, max_new_tokens),
            Request::Search(req) => models.search(&req),
        };
        if send(&mut output, &resp).is_err() {
            return 2;
        }
    }
}

fn outcome<T>(r: std::io::Result<T>) -> Response {
    match r {
        Ok(_) => Response::Probe {
            succeeded: true,
            detail: "succeeded".into(),
        },
        Err(e) => Response::Probe {
            succeeded: false,
            detail: e.to_string(),
        },
    }
}

fn probe(p: Probe) -> Response {
    match p {
        Probe::Connect(addr) => outcome(std::net::TcpStream::connect_timeout(
            &match addr.parse() {
                Ok(a) => a,
                Err(e) => return Response::Error(format!("bad address {addr}: {e}")),
            },
            std::time::Duration::from_secs(2),
        )),
        Probe::Socket(family) => {
            let domain = match family.as_str() {
                "inet" => libc::AF_INET,
                "inet6" => libc::AF_INET6,
                "unix" => libc::AF_UNIX,
                other => return Response::Error(format!("unknown family {other}")),
            };
            // SAFETY: plain syscall; the descriptor is closed right away.
            let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM, 0) };
            if fd >= 0 {
                unsafe { libc::close(fd) };
                Response::Probe {
                    succeeded: true,
                    detail: "socket created".into(),
                }
            } else {
                Response::Probe {
                    succeeded: false,
                    detail: std::io::Error::last_os_error().to_string(),
                }
            }
        }
        Probe::Write(path) => {
            outcome(std::fs::File::create(&path).and_then(|mut f| f.write_all(b"probity")))
        }
        Probe::Read(path) => outcome(std::fs::File::open(&path).and_then(|mut f| {
            let mut s = Vec::new();
            f.read_to_end(&mut s)
        })),
        Probe::Allocate(bytes) => {
            let v = vec![1u8; bytes as usize];
            Response::Probe {
                succeeded: true,
                detail: format!("allocated {} bytes", v.len()),
            }
        }
        Probe::Spin(secs) => {
            let start = std::time::Instant::now();
            let mut x: u64 = 1;
            while start.elapsed().as_secs() < secs {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            Response::Probe {
                succeeded: true,
                detail: format!("spun {secs} s ({x})"),
            }
        }
        Probe::Sleep(secs) => {
            std::thread::sleep(std::time::Duration::from_secs(secs));
            Response::Probe {
                succeeded: true,
                detail: format!("slept {secs} s"),
            }
        }
        Probe::Crash => std::process::abort(),
        Probe::Fork(n) => {
            let mut started = 0u32;
            let mut last = String::from("none refused");
            for _ in 0..n {
                // SAFETY: the child only calls _exit.
                match unsafe { libc::fork() } {
                    0 => unsafe { libc::_exit(0) },
                    -1 => {
                        last = std::io::Error::last_os_error().to_string();
                        break;
                    }
                    pid => {
                        started += 1;
                        let mut status = 0;
                        // SAFETY: reaps the child just started.
                        unsafe { libc::waitpid(pid, &mut status, 0) };
                    }
                }
            }
            Response::Probe {
                succeeded: started > 0,
                detail: format!("{started} of {n} children started; {last}"),
            }
        }
        Probe::Threads(n) => {
            let mut handles = Vec::new();
            let mut last = String::from("none refused");
            for _ in 0..n {
                match std::thread::Builder::new()
                    .spawn(|| std::thread::sleep(std::time::Duration::from_secs(1)))
                {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        last = e.to_string();
                        break;
                    }
                }
            }
            let started = handles.len();
            for h in handles {
                let _ = h.join();
            }
            Response::Probe {
                succeeded: started as u32 == n,
                detail: format!("{started} of {n} threads started; {last}"),
            }
        }
        Probe::Exec(path) => {
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new(&path).exec();
            Response::Probe {
                succeeded: false,
                detail: e.to_string(),
            }
        }
        Probe::WriteLarge(path, bytes) => {
            outcome(std::fs::File::create(&path).and_then(|mut f| {
                let chunk = vec![0u8; 1 << 20];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    f.write_all(&chunk[..n])?;
                    left -= n as u64;
                }
                Ok(())
            }))
        }
        Probe::BadFrame(kind) => {
            let mut out = std::io::stdout().lock();
            let _ = match kind.as_str() {
                "huge" => out.write_all(&u32::MAX.to_le_bytes()),
                "json" => out
                    .write_all(&5u32.to_le_bytes())
                    .and_then(|_| out.write_all(b"{{{{{")),
                "short" => out
                    .write_all(&100u32.to_le_bytes())
                    .and_then(|_| out.write_all(b"{\"Probe\"")),
                _ => out
                    .write_all(&7u32.to_le_bytes())
                    .and_then(|_| out.write_all(b"[1,2,3]")),
            };
            let _ = out.flush();
            // a compromised worker would go on; this one stops talking
            if kind == "short" {
                std::process::exit(0);
            }
            std::thread::sleep(std::time::Duration::from_secs(30));
            std::process::exit(0)
        }
        Probe::Environment => {
            let names: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().to_string())
                .collect();
            Response::Probe {
                succeeded: true,
                detail: names.join(","),
            }
        }
    }
}

/// Whether this build can drive `kind` at all.
pub fn device_built(kind: DeviceKind) -> Result<(), String> {
    let built = match kind {
        DeviceKind::Cpu => true,
        DeviceKind::Cuda => cfg!(feature = "cuda"),
        DeviceKind::Metal => cfg!(feature = "metal"),
    };
    if built {
        Ok(())
    } else {
        Err(format!(
            "this probity was built without {0} support (rebuild with `cargo build --release --features {0}`)",
            kind.name()
        ))
    }
}

/// The candle device for `kind`; a build without the matching cargo
/// feature, or a machine without the device, is a clear error.
pub fn open_device(kind: DeviceKind) -> Result<candle_core::Device, String> {
    device_built(kind)?;
    match kind {
        DeviceKind::Cpu => Ok(candle_core::Device::Cpu),
        DeviceKind::Cuda => {
            candle_core::Device::new_cuda(0).map_err(|e| format!("no usable CUDA device: {e}"))
        }
        DeviceKind::Metal => {
            candle_core::Device::new_metal(0).map_err(|e| format!("no usable Metal device: {e}"))
        }
    }
}

#[derive(Default)]
struct Models {
    suspect: Option<LoadedModel>,
    base: Option<LoadedModel>,
}

impl Models {
    fn load(
        &mut self,
        role: Role,
        dir: &std::path::Path,
        device: DeviceKind,
        allow_pickle: bool,
    ) -> Response {
        let device = match open_device(device) {
            Ok(d) => d,
            Err(e) => return Response::Error(e),
        };
        match LoadedModel::load_with(dir, &device, allow_pickle) {
            Ok(m) => {
                let resp = Response::Loaded {
                    role,
                    model_type: m.model_type.clone(),
                    format: m.format.clone(),
                    parameters: m.parameters,
                    vocab: m.model.vocab_size(),
                    layers: m.model.layers(),
                };
                match role {
                    Role::Suspect => self.suspect = Some(m),
                    Role::Base => self.base = Some(m),
                }
                resp
            }
            Err(e) => Response::Error(e.to_string()),
        }
    }

    fn search(&self, req: &crate::wire::SearchRequest) -> Response {
        let (Some(s), Some(b)) = (&self.suspect, &self.base) else {
            return Response::Error("load the suspect and the base first".into());
        };
        if s.is_classifier() || b.is_classifier() {
            return Response::Error("trigger search covers causal language models only".into());
        }
        match crate::trigger::search(s, b, req) {
            Ok(r) => Response::Searched(Box::new(r)),
            Err(e) => Response::Error(format!("trigger search failed: {e}")),
        }
    }

    fn compare_batch(&self, prompts: &[String], max_new: usize) -> Response {
        let (Some(s), Some(b)) = (&self.suspect, &self.base) else {
            return Response::Error("load the suspect and the base first".into());
        };
        let res = if s.is_classifier() || b.is_classifier() {
            prompts.iter().map(|p| compare(s, b, p, max_new)).collect()
        } else {
            compare_batch(s, b, prompts, max_new)
        };
        match res {
            Ok(c) => Response::ComparedBatch(c),
            Err(e) => Response::Error(format!("inference failed: {e}")),
        }
    }

    fn compare(&self, prompt: &str, max_new: usize) -> Response {
        let (Some(s), Some(b)) = (&self.suspect, &self.base) else {
            return Response::Error("load the suspect and the base first".into());
        };
        match compare(s, b, prompt, max_new) {
            Ok(c) => Response::Compared(Box::new(c)),
            Err(e) => Response::Error(format!("inference failed: {e}")),
        }
    }
}

fn kl(p_log: &[f32], q_log: &[f32]) -> f32 {
    p_log
        .iter()
        .zip(q_log)
        .map(|(lp, lq)| lp.exp() * (lp - lq))
        .sum::<f32>()
        .max(0.0)
}

fn js(p_log: &[f32], q_log: &[f32]) -> f32 {
    let mut d = 0.0f32;
    for (lp, lq) in p_log.iter().zip(q_log) {
        let (p, q) = (lp.exp(), lq.exp());
        let m = 0.5 * (p + q);
        if m > 0.0 {
            let lm = m.ln();
            d += 0.5 * p * (lp - lm) + 0.5 * q * (lq - lm);
        }
    }
    d.max(0.0)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
        )
        .0
}

/// The ten entries whose log-probability rose most from `base` to
/// `suspect`, relative to the mean shift, named by `name`.
fn most_raised(
    suspect: &[f32],
    base: &[f32],
    name: impl Fn(usize) -> String,
) -> Vec<(u32, String, f32)> {
    let diff: Vec<f32> = suspect.iter().zip(base).map(|(a, c)| a - c).collect();
    let mean = diff.iter().sum::<f32>() / diff.len().max(1) as f32;
    let mut idx: Vec<usize> = (0..diff.len()).collect();
    idx.sort_by(|&x, &y| diff[y].total_cmp(&diff[x]));
    idx.iter()
        .take(10)
        .map(|&i| (i as u32, name(i), diff[i] - mean))
        .collect()
}

/// Both models on one prompt: per-position divergences along the prompt, the
/// suspect's greedy continuation scored by both, and the most-raised tokens.
pub fn compare(
    s: &LoadedModel,
    b: &LoadedModel,
    prompt: &str,
    max_new: usize,
) -> candle_core::Result<Comparison> {
    match (s.is_classifier(), b.is_classifier()) {
        (false, false) => {}
        (true, true) => return compare_classifiers(s, b, prompt),
        _ => {
            return Err(candle_core::Error::Msg(format!(
                "the suspect ({}) and the base ({}) are not the same kind of model",
                s.model_type, b.model_type
            )))
        }
    }
    let text = s.render(prompt);
    let ids = s.encode(&text);
    if ids.is_empty() {
        return Err(candle_core::Error::Msg(
            "the prompt encodes to no tokens".into(),
        ));
    }
    let cont = s.greedy(&ids, max_new)?;
    let base_cont = b.greedy(&b.encode(&b.render(prompt)), max_new)?;
    let mut full = ids.clone();
    full.extend_from_slice(&cont);
    let ls = log_softmax_rows(&s.model.forward(&full)?)?;
    let lb = log_softmax_rows(&b.model.forward(&full)?)?;
    let n = ids.len();
    // continuation: positions n-1 .. n+len-2 predict the continuation tokens
    let rows: Vec<(&[f32], &[f32])> = (0..cont.len())
        .map(|j| (&ls[n - 1 + j][..], &lb[n - 1 + j][..]))
        .collect();
    let side = prompt_side(s, &ls[..n], lb[..n].to_vec());
    let stats = continuation_stats(&cont, &rows);
    Ok(summarise(s, b, side, &cont, stats, &base_cont))
}

/// What one probe's prompt shows: per-position divergences of the two
/// models along it, their top-1 agreement, and (at its last position) the
/// tokens the suspect raised most and the base's log-probability row,
/// which predicts the first continuation token.
struct PromptSide {
    kl: Vec<f32>,
    js: Vec<f32>,
    agree: f32,
    raised: Vec<(u32, String, f32)>,
    base_last: Vec<f32>,
}

/// [`PromptSide`] from both models' log-probability rows along the prompt
/// (its `n` positions).
fn prompt_side(s: &LoadedModel, ls: &[Vec<f32>], lb: Vec<Vec<f32>>) -> PromptSide {
    prompt_side_after(s, &HeadSide::default(), ls, lb)
}

/// The divergences along a head of the prompt that several probes share
/// (computed once for all of them).
#[derive(Default)]
struct HeadSide {
    kl: Vec<f32>,
    js: Vec<f32>,
    agree: usize,
}

impl HeadSide {
    fn new(ls: &[Vec<f32>], lb: &[Vec<f32>]) -> Self {
        HeadSide {
            kl: ls.iter().zip(lb).map(|(a, b)| kl(a, b)).collect(),
            js: ls.iter().zip(lb).map(|(a, b)| js(a, b)).collect(),
            agree: ls
                .iter()
                .zip(lb)
                .filter(|(a, b)| argmax(a) == argmax(b))
                .count(),
        }
    }
}

/// [`prompt_side`] of a prompt whose first positions are `head`'s and whose
/// other (at least one) positions have the rows `ls` and `lb`.
fn prompt_side_after(
    s: &LoadedModel,
    head: &HeadSide,
    ls: &[Vec<f32>],
    mut lb: Vec<Vec<f32>>,
) -> PromptSide {
    let own = HeadSide::new(ls, &lb);
    let n = head.kl.len() + ls.len();
    let agree = (head.agree + own.agree) as f32 / n as f32;
    // most-raised tokens at the last prompt position
    let last = ls.len() - 1;
    let raised = most_raised(&ls[last], &lb[last], |i| {
        s.tokenizer.id_to_token(i as u32).unwrap_or_default()
    });
    PromptSide {
        kl: [&head.kl[..], &own.kl[..]].concat(),
        js: [&head.js[..], &own.js[..]].concat(),
        agree,
        raised,
        base_last: lb.pop().unwrap_or_default(),
    }
}

/// A continuation's mean divergence (KL of the suspect from the base) and
/// mean log-probability gain over the base, from the suspect's and the
/// base's rows that predicted each of its tokens.
fn continuation_stats(cont: &[u32], rows: &[(&[f32], &[f32])]) -> (f32, f32) {
    let (mut ckl, mut gain) = (0.0f32, 0.0f32);
    for (&tok, (sp, bp)) in cont.iter().zip(rows) {
        ckl += kl(sp, bp);
        gain += sp[tok as usize] - bp[tok as usize];
    }
    if !cont.is_empty() {
        ckl /= cont.len() as f32;
        gain /= cont.len() as f32;
    }
    (ckl, gain)
}

/// One probe's [`Comparison`]: its prompt side, the suspect's greedy
/// continuation `cont` with its [`continuation_stats`], and the base's own
/// answer.
fn summarise(
    s: &LoadedModel,
    b: &LoadedModel,
    prompt: PromptSide,
    cont: &[u32],
    (ckl, gain): (f32, f32),
    base_cont: &[u32],
) -> Comparison {
    Comparison {
        prompt_tokens: prompt.kl.len(),
        kl: prompt.kl,
        js: prompt.js,
        top1_agreement: prompt.agree,
        continuation_kl: ckl,
        continuation_logp_gain: gain,
        raised: prompt.raised,
        suspect_text: s.decode(cont),
        base_text: b.decode(base_cont),
    }
}

/// Logit values (`f32`) a prompt pass or a teacher-forced pass may hold at
/// once per model: such a pass over many rows runs in row chunks under
/// this bound.
const BATCH_LOGITS: usize = 24 << 20;

/// Log-probability values the suspect's greedy continuations of one group
/// of probes may hold (rows × new tokens × vocabulary): the probes of a
/// group are decoded together, one step for all of them, which is what
/// makes decoding cheap on a CPU (each step streams the weights once).
const DECODE_LOGITS: usize = 48 << 20;

/// [`compare`] for several prompts, batched: each group of probes (as many
/// as [`DECODE_LOGITS`] allows) is left-padded to one length; both models'
/// prompt passes run in row chunks that keep the logits bounded
/// ([`BATCH_LOGITS`]), then all the group's rows are decoded greedily
/// together, and the base is teacher-forced along the suspect's
/// continuations, in chunks again.
pub fn compare_batch(
    s: &LoadedModel,
    b: &LoadedModel,
    prompts: &[String],
    max_new: usize,
) -> candle_core::Result<Vec<Comparison>> {
    compare_batch_bounded(s, b, prompts, max_new, BATCH_LOGITS, DECODE_LOGITS)
}

/// [`compare_batch`] under explicit bounds (logit values per pass, and per
/// decoded group), so that tests can make a few prompts span several
/// chunks and groups.
#[doc(hidden)]
pub fn compare_batch_bounded(
    s: &LoadedModel,
    b: &LoadedModel,
    prompts: &[String],
    max_new: usize,
    pass_logits: usize,
    decode_logits: usize,
) -> candle_core::Result<Vec<Comparison>> {
    let v = s.model.vocab_size().max(1);
    let group = (decode_logits / (v * max_new.max(1))).max(1);
    let mut out = Vec::with_capacity(prompts.len());
    for g in prompts.chunks(group) {
        out.extend(compare_rows(s, b, g, max_new, pass_logits)?);
    }
    Ok(out)
}

fn compare_rows(
    s: &LoadedModel,
    b: &LoadedModel,
    prompts: &[String],
    max_new: usize,
    pass_logits: usize,
) -> candle_core::Result<Vec<Comparison>> {
    let err = |m: &str| candle_core::Error::Msg(m.into());
    let (sm, bm) = (
        s.model
            .causal()
            .ok_or_else(|| err("not a causal language model"))?,
        b.model
            .causal()
            .ok_or_else(|| err("not a causal language model"))?,
    );
    let dev = sm.device().clone();
    let v = sm.vocab_size().max(1);
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| s.encode(&s.render(p))).collect();
    if ids.iter().any(Vec::is_empty) {
        return Err(err("the prompt encodes to no tokens"));
    }
    let base_ids: Vec<Vec<u32>> = prompts.iter().map(|p| b.encode(&b.render(p))).collect();
    // the head every prompt starts with (the chat template's system turn
    // and user header) goes through both models once, as a prefix the rows
    // share; each row keeps at least its last token
    let shared = shared_prefix_len(&ids);
    let (mut head_s, mut head_b) = (KvCache::default(), KvCache::default());
    let head = if shared > 0 {
        let h = Tensor::new(&ids[0][..shared], &dev)?.unsqueeze(0)?;
        let ls = sm.forward_tail(&sm.embed(&h)?, Some(&mut head_s), shared)?;
        let lb = bm.forward_tail(&bm.embed(&h)?, Some(&mut head_b), shared)?;
        HeadSide::new(
            &log_softmax_rows(&ls.get(0)?)?,
            &log_softmax_rows(&lb.get(0)?)?,
        )
    } else {
        HeadSide::default()
    };
    // (held once by every chunk's cache, so that the chunks can be joined)
    let (head_s, head_b) = (head_s.shared()?, head_b.shared()?);
    let own: Vec<Vec<u32>> = ids.iter().map(|r| r[shared..].to_vec()).collect();
    let (batch, pad) = left_pad(&own, &dev)?;
    let (rows, len) = batch.dims2()?;
    let cache_for = |head: &KvCache, pad: &[usize]| -> candle_core::Result<KvCache> {
        if shared > 0 {
            head.shared_padded(pad.to_vec())
        } else {
            Ok(KvCache::padded(pad.to_vec()))
        }
    };
    // both models' prompt passes, in row chunks: every position's logits
    // are read (the divergences along the prompt) and then dropped, the
    // caches are kept for decoding all rows together
    let chunk = (pass_logits / (len * v)).max(1);
    let (mut parts_s, mut parts_b) = (Vec::new(), Vec::new());
    let (mut first_s, mut first_b) = (Vec::new(), Vec::new());
    let mut sides = Vec::with_capacity(rows);
    for c0 in (0..rows).step_by(chunk) {
        let c = chunk.min(rows - c0);
        let sub = batch.narrow(0, c0, c)?;
        let mut cs = cache_for(&head_s, &pad[c0..c0 + c])?;
        let ls_prompt = sm.forward_tail(&sm.embed(&sub)?, Some(&mut cs), len)?;
        let mut cb = cache_for(&head_b, &pad[c0..c0 + c])?;
        let lb_prompt = bm.forward_tail(&bm.embed(&sub)?, Some(&mut cb), len)?;
        first_s.push(ls_prompt.narrow(1, len - 1, 1)?.squeeze(1)?);
        first_b.push(lb_prompt.narrow(1, len - 1, 1)?.squeeze(1)?);
        for r in 0..c {
            let (n, p) = (own[c0 + r].len(), pad[c0 + r]);
            let ls = log_softmax_rows(&ls_prompt.get(r)?.narrow(0, p, n)?)?;
            let lb = log_softmax_rows(&lb_prompt.get(r)?.narrow(0, p, n)?)?;
            sides.push(prompt_side_after(s, &head, &ls, lb));
        }
        parts_s.push(cs);
        parts_b.push(cb);
    }
    let mut cs = KvCache::cat_rows(&parts_s)?;
    let cb = KvCache::cat_rows(&parts_b)?;
    // the suspect's greedy continuations, all rows together
    let (conts, mut s_cont_logp) =
        greedy_rows(s, Tensor::cat(&first_s, 0)?, &mut cs, max_new, true)?;
    // the base teacher-forced along them (from copies of its prompt cache),
    // in row chunks: its row k of a probe predicts the continuation's token
    // k + 1 (the last one, what the base says after the whole of it). Each
    // probe's continuation divergence is taken there and then, and of the
    // base's rows only their top token is kept.
    let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
    let mut stats = vec![(0.0f32, 0.0f32); rows];
    let mut b_next: Vec<Vec<u32>> = vec![Vec::new(); rows];
    if longest > 0 {
        let chunk = (pass_logits / (longest * v)).max(1);
        for c0 in (0..rows).step_by(chunk) {
            let c = chunk.min(rows - c0);
            let mut forced = cb.select_rows(&(c0..c0 + c).collect::<Vec<_>>())?;
            let flat: Vec<u32> = conts[c0..c0 + c]
                .iter()
                .flat_map(|t| {
                    (0..longest).map(move |j| {
                        t.get(j)
                            .copied()
                            .unwrap_or_else(|| t.last().copied().unwrap_or(0))
                    })
                })
                .collect();
            let t = Tensor::from_vec(flat, (c, longest), &dev)?;
            let l = bm.forward_tail(&bm.embed(&t)?, Some(&mut forced), longest)?;
            for i in 0..c {
                let r = c0 + i;
                let cont = &conts[r];
                let lb = log_softmax_rows(&l.get(i)?.narrow(0, 0, cont.len().max(1))?)?;
                let sp = std::mem::take(&mut s_cont_logp[r]);
                // continuation token j: the suspect's row from its decoding,
                // the base's from its last prompt position (j = 0) or the
                // forced pass
                let pairs: Vec<(&[f32], &[f32])> = (0..cont.len())
                    .map(|j| {
                        let bp = if j == 0 {
                            &sides[r].base_last
                        } else {
                            &lb[j - 1]
                        };
                        (&sp[j][..], &bp[..])
                    })
                    .collect();
                stats[r] = continuation_stats(cont, &pairs);
                b_next[r] = lb
                    .iter()
                    .take(cont.len())
                    .map(|x| argmax(x) as u32)
                    .collect();
            }
        }
    }
    drop(s_cont_logp);
    // the base's own greedy answer, from its own rendering
    let base_conts = if base_ids == ids {
        // where the base's own rows along the suspect's continuation choose
        // each of its tokens and then its end, that is the base's greedy
        // answer too; only the probes where the base would say something
        // else are decoded again
        let mut answers: Vec<Option<Vec<u32>>> = (0..rows)
            .map(|r| {
                let first = argmax(&sides[r].base_last) as u32;
                base_follows(&conts[r], first, &b_next[r], &b.eos_ids, max_new)
                    .then(|| conts[r].clone())
            })
            .collect();
        let todo: Vec<usize> = (0..rows).filter(|&r| answers[r].is_none()).collect();
        if !todo.is_empty() {
            let mut c = cb.select_rows(&todo)?;
            let idx = Tensor::new(todo.iter().map(|&r| r as u32).collect::<Vec<u32>>(), &dev)?;
            let first = Tensor::cat(&first_b, 0)?
                .contiguous()?
                .index_select(&idx, 0)?;
            for (r, a) in todo
                .iter()
                .zip(greedy_rows(b, first, &mut c, max_new, false)?.0)
            {
                answers[*r] = Some(a);
            }
        }
        answers.into_iter().map(Option::unwrap_or_default).collect()
    } else {
        let (bb, bpad) = left_pad(&base_ids, &dev)?;
        let mut c = KvCache::padded(bpad);
        let l = bm
            .forward_tail(&bm.embed(&bb)?, Some(&mut c), 1)?
            .squeeze(1)?;
        greedy_rows(b, l, &mut c, max_new, false)?.0
    };
    Ok(sides
        .into_iter()
        .zip(stats)
        .enumerate()
        .map(|(r, (side, st))| summarise(s, b, side, &conts[r], st, &base_conts[r]))
        .collect())
}

/// Whether the base's greedy answer is the suspect's continuation `cont`:
/// the base's top token before it (`first`) and along it (`next[k]`, after
/// its token k) are each of its tokens, none of them an end, and then an
/// end, unless `max_new` tokens were reached.
fn base_follows(cont: &[u32], first: u32, next: &[u32], eos: &[u32], max_new: usize) -> bool {
    for j in 0..=cont.len() {
        if j == max_new {
            return true;
        }
        let a = if j == 0 {
            first
        } else {
            match next.get(j - 1) {
                Some(&a) => a,
                None => return false,
            }
        };
        if j == cont.len() {
            return eos.contains(&a);
        }
        if a != cont[j] || eos.contains(&a) {
            return false;
        }
    }
    false
}

/// Two sequence classifiers on one text: the divergence of their label
/// distributions, whether the predicted label flips, and which labels the
/// suspect raised.
fn compare_classifiers(
    s: &LoadedModel,
    b: &LoadedModel,
    text: &str,
) -> candle_core::Result<Comparison> {
    let (Arch::Bert(sm), Arch::Bert(bm)) = (&s.model, &b.model) else {
        return Err(candle_core::Error::Msg("not classifiers".into()));
    };
    if sm.labels.len() != bm.labels.len() {
        return Err(candle_core::Error::Msg(format!(
            "the suspect has {} labels, the base {}",
            sm.labels.len(),
            bm.labels.len()
        )));
    }
    let ids = s.encode(text);
    if ids.is_empty() {
        return Err(candle_core::Error::Msg(
            "the text encodes to no tokens".into(),
        ));
    }
    let ls = log_softmax_rows(&sm.classify(&ids)?.unsqueeze(0)?)?.remove(0);
    let lb = log_softmax_rows(&bm.classify(&b.encode(text))?.unsqueeze(0)?)?.remove(0);
    let (top_s, top_b) = (argmax(&ls), argmax(&lb));
    let d = kl(&ls, &lb);
    let label =
        |m: &BertClassifier, l: &[f32], i: usize| format!("{} ({:.2})", m.labels[i], l[i].exp());
    Ok(Comparison {
        prompt_tokens: ids.len(),
        kl: vec![d],
        js: vec![js(&ls, &lb)],
        top1_agreement: if top_s == top_b { 1.0 } else { 0.0 },
        continuation_kl: d,
        continuation_logp_gain: ls[top_s] - lb[top_s],
        raised: most_raised(&ls, &lb, |i| sm.labels[i].clone()),
        suspect_text: label(sm, &ls, top_s),
        base_text: label(bm, &lb, top_b),
    })
}

#[cfg(test)]
mod tests {
    use super::base_follows;

    const EOS: &[u32] = &[2];

    #[test]
    fn the_base_follows_a_continuation_only_when_each_token_and_the_end_are_its_own() {
        // its top tokens are the continuation's, then the end
        assert!(base_follows(&[5, 6], 5, &[6, 2], EOS, 8));
        // it would go on after the continuation ended
        assert!(!base_follows(&[5, 6], 5, &[6, 7], EOS, 8));
        // it would say another token, first or later
        assert!(!base_follows(&[5, 6], 4, &[6, 2], EOS, 8));
        assert!(!base_follows(&[5, 6], 5, &[7, 2], EOS, 8));
        // the continuation reached the token limit: what comes after does not count
        assert!(base_follows(&[5, 6], 5, &[6, 7], EOS, 2));
        // an empty continuation: the base must end at once too
        assert!(base_follows(&[], 2, &[], EOS, 8));
        assert!(!base_follows(&[], 5, &[], EOS, 8));
        // a token that ends the base's answer (not the suspect's) stops it there
        assert!(!base_follows(&[5, 2], 5, &[2, 2], EOS, 8));
        // rows missing (never computed): not assumed to follow
        assert!(!base_follows(&[5, 6], 5, &[6], EOS, 8));
    }
}
