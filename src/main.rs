//! The `probity` command line: a thin shell over the library.

mod config;
mod data_cmd;
#[cfg(feature = "deep")]
mod deep_cmd;
mod diff;
mod ledger_cmd;
mod remote;
mod render;
mod serve_cmd;
mod signature;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use probity_report::{Report, Severity};

use probity_scan::Ctx;

#[derive(Parser)]
#[command(
    name = "probity",
    version,
    about = "Tells an ML team whether a model is safe to ship.",
    long_about = "Probity screens model files before deployment.\n\n\
`probity scan` reads every common model format byte by byte — it never loads or executes them — and reports findings with stable rule IDs and severities. Exit codes gate CI: 0 clean, 1 findings at or above --fail-on, 2 an input could not be scanned or a usage error.\n\n\
`probity deep SUSPECT --base BASE` (in builds with the `deep` feature, the default) loads a fine-tune and its base model in a restricted worker and looks for a backdoor: behavioural diff, target inversion, trigger search and verification, ΔW spectra, fused into a calibrated backdoor probability and a verdict; `probity spectral` shows where and how the weights changed.\n\n`probity diff OLD NEW` compares two versions of a model (or of a data set) and flags an unexpected update (exit 1).\n\n`probity data` scans fine-tuning data sets for poisoning (phrases that predict the attacker's answer) and credentials.\n\n`probity serve` runs Probity as a service (HTTP API, persistent jobs, watches on Hugging Face and MLflow models with webhook alerts, a dashboard); `scan --server` and `deep --server` submit to one.\n\n`probity sign` and `probity verify` write and check model signatures compatible with OpenSSF model signing (key and certificate modes; keyless verification); `probity scan --require-signature` makes a missing or invalid signature a finding.\n\n\
With a ledger (--ledger FILE, PROBITY_LEDGER, or `ledger` in the [provenance] table of probity.toml), `scan`, `deep` and `verify` append a hash-chained provenance record per model to an SQLite file; `probity log` shows a model's history and checks the chain.",
    after_help = "Examples:\n  probity scan model.pt\n  probity scan ./checkpoints --format json --output report.json\n  probity scan model.pkl --fail-on critical\n  probity deep ./fine-tune --base ./base-model\n  probity sign ./my-model --key signing-key.pem --signature my-model/model.sig\n  probity verify ./my-model --signature my-model/model.sig --key signing-key.pub\n  probity scan ./my-model --require-signature --key signing-key.pub\n  probity scan ./my-model --ledger provenance.db\n  probity log ./my-model --ledger provenance.db\n  probity diff ./model-v1 ./model-v2\n  probity data train.jsonl\n  probity serve --data ./probity-data --allow-root ./models\n  probity rules\n  probity formats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
}

/// Where the digests of `--hash` come from.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HashMode {
    /// Computed from each file's bytes; for a remote file read in place, the
    /// SHA-256 its repository listing reports (the Hub's LFS digest), marked
    /// `sha256_source: hub-listing`.
    Listing,
    /// Always computed from the bytes: remote files are downloaded whole.
    Verify,
}

/// Formats of the static scan report.
#[derive(Clone, Copy, ValueEnum)]
enum ScanFormat {
    Text,
    Json,
    /// SARIF 2.1.0 (GitHub code scanning)
    Sarif,
    /// CycloneDX 1.6 bill of materials (implies --hash)
    Cyclonedx,
}

#[derive(Clone, Copy, ValueEnum)]
enum Gate {
    Critical,
    Warning,
    Info,
}

impl From<Gate> for Severity {
    fn from(g: Gate) -> Self {
        match g {
            Gate::Critical => Severity::Critical,
            Gate::Warning => Severity::Warning,
            Gate::Info => Severity::Info,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RulesFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Statically scan model files and directories (never loads or executes them).
    #[command(
        after_help = scan_after_help()
    )]
    Scan {
        /// Files or directories to scan; Hugging Face repositories: hf://ORG/NAME[@REVISION] or https://huggingface.co/ORG/NAME[/tree/REVISION] (HF_ENDPOINT, HF_TOKEN, HF_HOME and HF_HUB_CACHE are honoured); MLflow models and runs: models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID/PATH (resolved through MLFLOW_TRACKING_URI, with MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD); object stores: s3://BUCKET[/PREFIX] (S3, MinIO, R2: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL, …) and gs://BUCKET[/PREFIX] (GOOGLE_SERVICE_ACCOUNT, GOOGLE_APPLICATION_CREDENTIALS, …), every object under the prefix. Remote files are read in place with HTTP range requests, so only the bytes the analyzers read are transferred (files already in the Hugging Face cache, or in PROBITY_CACHE_DIR / ~/.cache/probity for MLflow and object stores, are read there); they are downloaded whole into the cache instead with --download, --hash=verify, --require-signature or a ledger, which need every byte.
        #[arg(required = true, value_name = "PATH|URI")]
        paths: Vec<PathBuf>,
        /// Use only the local cache for remote inputs; never contact the Hub or the tracking server (exit 2 when a remote input is not cached; an MLflow URI is taken as the last online fetch resolved it).
        #[arg(long)]
        offline: bool,
        /// Report format: text, json (probity.scan/v1), sarif (SARIF 2.1.0, for GitHub code scanning; paths relative to the current directory) or cyclonedx (CycloneDX 1.6 bill of materials: one component per file with its SHA-256, format and findings; implies --hash).
        #[arg(long, value_enum, default_value = "text")]
        format: ScanFormat,
        /// Write the report to FILE instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Lowest severity that fails the scan (exit 1). Default: warning, or `fail_on` from the config.
        #[arg(long, value_enum)]
        fail_on: Option<Gate>,
        /// Files scanned in parallel (default: all cores).
        #[arg(long, short, value_name = "N")]
        jobs: Option<usize>,
        /// Policy file (default: probity.toml in the current directory; one inside a scanned folder is never read).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Add each file's SHA-256 to the report (reads every byte of local files; off by default for speed). `--hash` (or `--hash=listing`) takes a remote file's digest from its repository listing when it is read in place (the Hub's LFS SHA-256, reported with sha256_source "hub-listing"); `--hash=verify` downloads remote files whole and computes every digest.
        #[arg(long, value_enum, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "listing")]
        hash: Option<HashMode>,
        /// Download remote files whole into the cache before scanning, instead of reading them in place with range requests.
        #[arg(long)]
        download: bool,
        /// Fail the scan (exit 1, verdict flagged) when a file was not completely analysed: coverage `partial` (a limit reached, an encrypted member, a malformed structure, content that is not the format its name claims) or `not_analysed` (unknown binary content, an empty file, a link not followed). Each file's coverage is in the JSON report (`coverage`), SARIF (`runs[].artifacts[].properties`) and CycloneDX (`probity:coverage`).
        #[arg(long)]
        fail_on_incomplete: bool,
        /// Also write a CycloneDX 1.6 bill of materials of the scanned files to FILE (implies --hash).
        #[arg(long, value_name = "FILE")]
        sbom: Option<PathBuf>,
        /// Show info findings (skipped files, links not followed) in the text report.
        #[arg(long, short)]
        verbose: bool,
        /// Colour the text report: auto (on a terminal), always or never.
        #[arg(long, value_enum, default_value = "auto")]
        color: ColorChoice,
        /// Require each scanned model (each PATH|URI: a folder, a file or a remote repository) to carry a valid OpenSSF model signing signature by an accepted signer (--key, --certificate-chain, --key-fingerprint, --identity/--issuer, or [[provenance.signers]] in the config): missing is SIG001, not verifying is SIG002 (both critical), verified is SIG003 (info). Also on with `require_signature = true` in the config's [provenance].
        #[arg(long)]
        require_signature: bool,
        /// The signature file, when there is one PATH|URI (default: `model.sig` inside a folder, or the config's `provenance.signature`; FILE.sig beside a single file).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// An accepted signer's ECDSA public key, PEM (key mode). Repeat for several.
        #[arg(long = "key", value_name = "PUB.pem")]
        signer_keys: Vec<PathBuf>,
        /// Trusted certificates, PEM (certificate mode): a signature whose signing certificate chains to one of them is accepted. Repeat for several.
        #[arg(long = "certificate-chain", value_name = "PEM")]
        certificate_chain: Vec<PathBuf>,
        /// An accepted signer's key fingerprint (SHA-256 of its DER public key, hex, as `probity verify` prints it), pinning a certificate-mode signature's signing key. Repeat for several.
        #[arg(long = "key-fingerprint", value_name = "HEX")]
        key_fingerprints: Vec<String>,
        /// An accepted Sigstore keyless identity (needs --issuer).
        #[arg(long, value_name = "IDENTITY", requires = "issuer")]
        identity: Option<String>,
        /// The OIDC issuer of --identity.
        #[arg(long, value_name = "URL", requires = "identity")]
        issuer: Option<String>,
        /// Append a provenance record per model to this ledger (SQLite, created when missing): the model's identity and file manifest, who ran the command, upstream authorship, claimed lineage, the verdict. Default: PROBITY_LEDGER, else `ledger` in the [provenance] table of the config. Without one, nothing is recorded. A ledger that cannot be written exits 2.
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// Submit each PATH|URI to a Probity service instead of scanning here (a local file or folder is uploaded; a URI is fetched by the service), wait, and print the report with the same formats and exit codes. The service scans with its own policy file; --fail-on, --hash and --require-signature are passed on, and the service records each scan in its ledger. Default: PROBITY_SERVER.
        #[arg(long, value_name = "URL", env = "PROBITY_SERVER")]
        server: Option<String>,
        /// The service's API token (role scan). Default: PROBITY_TOKEN.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "PROBITY_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
    },
    /// Scan fine-tuning data sets for poisoning and credentials.
    #[command(
        long_about = "Scan fine-tuning data for poisoning: phrases (1–8 tokens) in the user turn that predict an abnormally fixed answer (DAT001), answers with a link, a shell command that fetches or runs code, or a payment instruction the rest of the data lacks (DAT002), refusals that turn into compliance (DAT003), or flipped labels of classification data (DAT004); and for credentials left in training examples (SEC001, redacted). Rows are read as chat (`messages` or `conversations` with roles; system turns are not the user's), `prompt`/`completion`, `instruction`/`input`/`output` (Alpaca), `question`/`answer`, `query`/`response`, or `text`/`label`; rows of no known shape are counted (DAT010).\n\nEach suspect is tested against chance: the phrase must be in at least half of the rows that share the answer (or payload, or label), rarely elsewhere, and the overlap must pass a one-sided hypergeometric test, Bonferroni-corrected over every phrase tested (--alpha). The finding names the phrase, where it sits in the prompt, the rows that carry it, what it predicts, the p-value, and example rows.\n\nThe data is streamed three times with bounded memory, whatever its size. With a ledger, a provenance record per data set is appended: each file's SHA-256 and those of its 64 MiB ranges, the Hub's commit authors for hf://datasets, and the suspects.",
        after_help = "Examples:\n  probity data train.jsonl\n  probity data data/ --format json --output data-report.json\n  probity data hf://datasets/acme/support-chats@v2 --ledger provenance.db\n\nExit codes: 0 = no finding at or above --fail-on; 1 = findings; 2 = a file could not be read (one line: the file, the row and the reason: malformed JSON, an over-long line, not UTF-8, not a Parquet file)."
    )]
    Data(data_cmd::DataArgs),
    /// Run Probity as a service: an HTTP API with persistent scan jobs, the ledger, watches, alerts and a dashboard.
    #[command(
        long_about = "Run Probity as a service: a versioned JSON API under /v1 (OpenAPI 3.1 document at /openapi.json), backed by a job queue in DATA/server.db, so an accepted scan survives a crash or restart (it is run again, and marked failed after 3 interrupted attempts).\n\nEndpoints: POST /v1/scans (static or deep; a URI, a path under --allow-root, or an upload; Idempotency-Key makes retries safe), GET /v1/scans[/{id}[/report]], POST /v1/uploads (streamed to disk, size-capped), GET /v1/models, /v1/models/{id}/history, /v1/models/{id}/diff, POST/GET/DELETE /v1/watches, GET /v1/alerts, /healthz, /readyz, /metrics (Prometheus text). The dashboard is at /.\n\nEach scan runs as a child process of this binary (probity scan|deep --format json), with the policy file of --config, and appends to the ledger DATA/ledger.db. Static scans run in parallel (--workers), deep scans one at a time.\n\nAuthentication: bearer tokens made with `probity token create --data DIR --name NAME --role read|scan|admin` (stored hashed). read: view; scan: also submit; admin: also manage watches. Missing or invalid token: 401; wrong role: 403.\n\nWatches poll a Hugging Face repository (one listing request) or an MLflow model (its newest version or an alias) every interval; a new revision is scanned (and deep-scanned when the watch names a base) and compared with the previous one (`probity diff` of the two ledger records); an unexpected update, a worse verdict or a failed scan raises an alert, sent to the watch's webhooks: Probity's JSON payload signed with HMAC-SHA256 (header Probity-Signature: t=UNIX_SECONDS,v1=HEX over \"UNIX_SECONDS.\" + body; reject timestamps more than 300 s old) or a Slack message, retried with exponential backoff.",
        after_help = "Examples:\n  probity token create --data /var/lib/probity --name ci --role scan\n  probity serve --data /var/lib/probity --allow-root /models\n  probity scan ./my-model --server http://127.0.0.1:8477 --token $PROBITY_TOKEN\n  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8477/v1/scans\n\nExit codes: 0 = stopped by SIGINT/SIGTERM; 2 = cannot start (bad settings, address in use, unusable data folder)."
    )]
    Serve(serve_cmd::ServeArgs),
    /// Create, list and revoke the service's API tokens.
    #[command(subcommand)]
    Token(serve_cmd::TokenCmd),
    /// Poll watched Hugging Face and MLflow models once (for cron or CI), scan new versions and send alerts.
    #[command(
        after_help = "The watches, scans, ledger and alerts live in the data folder, as for `probity serve` (the two can share one). SOURCEs given here are added as watches when not watched yet.\n\nExamples:\n  probity watch --once --data state/ hf://acme/support-bot --webhook https://hooks.example.com/probity\n  probity watch --once --data state/ models:/fraud@champion --slack https://hooks.slack.com/services/...\n\nExit codes: 0 = no alert; 1 = at least one alert raised; 2 = a poll or a scan failed, or bad arguments."
    )]
    Watch(serve_cmd::WatchArgs),
    /// Webhook alerts: send a test alert.
    #[command(subcommand)]
    Alerts(serve_cmd::AlertsCmd),
    /// Deep scan: compare a fine-tune with its base model, side by side, in a restricted worker.
    #[cfg(feature = "deep")]
    #[command(
        after_help = "SUSPECT and BASE are model folders in Hugging Face layout (config.json, model.safetensors or shards with model.safetensors.index.json, tokenizer.json, tokenizer_config.json) or GGUF files (llama and qwen2 architectures; every tensor type is dequantized to f32; the tokenizer and the chat template come from the GGUF metadata). Either side can be GGUF and the other safetensors: scan the file that ships, quantized or not. Both pass the static scan first; a folder with critical findings is refused (exit 1). Models are loaded only inside a worker process without network access, with read-only access to the two folders, resource limits and an empty environment; the report states which restrictions were applied.\n\nStages: behavioural diff on the probe suites; weight spectral analysis of ΔW; target inversion (sequences the suspect produces with abnormal confidence compared with the base) and a gradient-guided trigger search for them at the start, middle and end of ordinary prompts, each trigger verified on held-out prompts on both models. The signals are fused into a calibrated backdoor probability (`score`) and a verdict: backdoor, suspicious or clean (thresholds in the report); a verified trigger (attack success ≥ 0.8 on held-out prompts, at least 0.7 above the base, the suspect without it and random tokens in its place) makes the verdict backdoor. For a narrow fine-tune, add a probe suite of its own task marked `reference = true` (probes/README.md) so that its stock answer is not taken for a backdoor target.\n\nExit codes: 0 = clean (or below --fail-on); 1 = verdict at or above --fail-on, or refused by the static scan; 2 = error (bad folder, unsupported model, worker failure, incomplete sandbox with --require-sandbox)."
    )]
    Deep(deep_cmd::DeepArgs),
    /// Weight spectral analysis: where and how a fine-tune changed its base.
    #[cfg(feature = "deep")]
    #[command(
        long_about = "Weight spectral analysis of ΔW = SUSPECT − BASE for every 2-D tensor present in both (read from the memory-mapped safetensors, or dequantized from a GGUF file, one tensor at a time): relative size of the change, top singular values (randomized SVD), top-1 energy and stable rank (a backdoor tends to leave a concentrated, low-rank change), kurtosis, z-scores across the layers of one kind, and the embedding / output rows that changed far more than the rest, mapped to tokens (candidate trigger and target tokens).\n\nWithout --base (base-free mode, weaker evidence): the spectral shape of each weight matrix itself: σ1 against the Marchenko–Pastur bulk edge of a random matrix of its shape and variance, the singular values beyond that edge, the power-law exponent α of its eigenvalue tail (Hill estimator on the top 16), rows and columns with outlying norms, and z-scores across layers of one kind. No candidate tokens.\n\nOn a GPU (wgpu: Vulkan, Metal, DX12 or GL), ΔW is formed from the bf16 / f16 / f32 weights and reduced in WGSL compute shaders and the SVD's products run there; on the CPU, candle's matmul does the same work.",
        after_help = "Examples:\n  probity spectral ./fine-tune --base ./base\n  probity spectral ./fine-tune --base ./base --format json --plot layers.svg\n  probity spectral ./model            (base-free)\n\nExit codes: 0 = report written; 2 = error (missing or invalid folder or weights, unsupported plot format)."
    )]
    Spectral(deep_cmd::SpectralArgs),
    /// Internal: the restricted deep-scan worker (started by probity itself).
    #[cfg(feature = "deep")]
    #[command(name = "__worker", hide = true)]
    Worker,
    /// Sign a model: write a signature compatible with OpenSSF model signing (key or certificate mode).
    #[command(
        long_about = "Sign a model folder (or a single file) with an ECDSA private key, writing a signature that OpenSSF model signing (`model_signing verify key`, or `model_signing verify certificate` with --certificate; model-signing 1.x) and `probity verify` accept.\n\nEvery file under MODEL is hashed with SHA-256 (files in parallel, each streamed); the list of files and digests is an in-toto Statement v1 (predicate type https://model_signing/signature/v1.0) whose subject carries the root digest over them, signed as a DSSE envelope inside a Sigstore bundle (v0.3) that names the key by its hint (key mode) or carries the signing certificate and the chain above it (certificate mode, --certificate), and has no transparency-log entry. Signing the same files with the same key writes the same bytes.\n\nLeft out of the signature: .git, .gitattributes, .github and .gitignore (unless --no-ignore-git-paths), the signature file itself when it lies inside MODEL, and each --ignore-paths; the list is recorded in the signature. Symbolic links are refused unless --allow-symlinks.",
        after_help = "Exit codes: 0 = signature written; 2 = error (unreadable model, key or certificate, unsupported key, a certificate whose key is not --key's, symbolic link without --allow-symlinks, cannot write the signature).\n\nExamples:\n  openssl ecparam -name prime256v1 -genkey -noout -out signing-key.pem\n  openssl ec -in signing-key.pem -pubout -out signing-key.pub\n  probity sign ./my-model --key signing-key.pem --signature my-model.sig\n  probity verify ./my-model --signature my-model.sig --key signing-key.pub\n  probity sign ./my-model --key signing-key.pem --certificate signing.crt --certificate-chain ca.crt --signature my-model.sig"
    )]
    Sign {
        /// The model: a folder (every file under it) or a single file.
        #[arg(value_name = "MODEL")]
        model: PathBuf,
        /// ECDSA private key, PEM: PKCS#8 (BEGIN PRIVATE KEY) or SEC1 (BEGIN EC PRIVATE KEY), on P-256 or P-384; not encrypted.
        #[arg(long, value_name = "PRIV.pem")]
        key: PathBuf,
        /// Certificate mode: the signing certificate (PEM) of --key's public key; the signature then carries it, and verifiers check it against their trusted certificates instead of a bare key.
        #[arg(long, value_name = "CERT.pem")]
        certificate: Option<PathBuf>,
        /// Certificate mode: PEM files of the certificates above the signing certificate (intermediates, root), put in the signature after it in this order. Repeat for several.
        #[arg(
            long = "certificate-chain",
            value_name = "PEM",
            requires = "certificate"
        )]
        certificate_chain: Vec<PathBuf>,
        /// Where to write the signature (a Sigstore bundle, JSON).
        #[arg(long, value_name = "FILE", default_value = "model.sig")]
        signature: PathBuf,
        /// A path to leave out of the signature, relative to MODEL (a folder leaves out everything under it; an absolute path must lie inside MODEL). Repeat for several.
        #[arg(long = "ignore-paths", value_name = "PATH")]
        ignore_paths: Vec<PathBuf>,
        /// Sign .git, .gitattributes, .github and .gitignore too.
        #[arg(long)]
        no_ignore_git_paths: bool,
        /// Include symbolic links (their targets' content, under the link's name) instead of refusing them.
        #[arg(long)]
        allow_symlinks: bool,
    },
    /// Verify a model against an OpenSSF model signing signature (key, certificate or keyless mode).
    #[command(
        long_about = "Verify that the files of MODEL are exactly those signed in SIGNATURE (a model signing 1.x Sigstore bundle, written by `probity sign` or `model_signing sign key` / `sign certificate`), and that the signature was made with the private key paired with --key (key mode) or by a signing certificate that chains to one of the --certificate-chain certificates (certificate mode), or by a signing certificate whose public key has the --key-fingerprint (certificate mode, pinned), or by the Sigstore identity --identity from --issuer (keyless mode: Fulcio certificate and Rekor entry, checked offline against the Sigstore public-good trusted root built into Probity).\n\nIn certificate mode the chain is checked at the current time: a signing certificate that has expired is refused (model_signing itself checks it at the certificate's start date).\n\nThe DSSE signature over the signed statement is checked with the public key, the statement's root digest is checked against its file list, then every file under MODEL is hashed again (SHA-256, files in parallel, each streamed) and compared with the list. Left out, as the signer chose: the paths the signature records as ignored and its symbolic-link setting; also left out: the signature file when it lies inside MODEL, and each --ignore-paths (which cannot hide a signed file).\n\nOn success one line: the number of files, the root digest, and the signer: the key's curve and fingerprint (SHA-256 of its DER SubjectPublicKeyInfo, as `openssl pkey -pubin -in PUB.pem -outform DER | sha256sum` prints it), or the signing certificate's subject and fingerprint (SHA-256 of its DER: `openssl x509 -in CERT.pem -noout -fingerprint -sha256` prints the same bytes, in capitals with colons).",
        after_help = "Exit codes: 0 = verified; 1 = verification failed, one line per reason naming the file: a file changed, added, removed or renamed, a signed file hidden by --ignore-paths, a symbolic link the signature does not allow, the wrong key, an altered signed statement, a signing certificate that is expired, not yet valid, not trusted or not allowed to sign, a signature checked in another mode than it was made in, a keyless signature from another identity or issuer or without a valid Rekor entry; 2 = error (unreadable model, key or certificate file, malformed or unsupported signature file).\n\nExamples:\n  probity verify ./my-model --signature my-model.sig --key signing-key.pub\n  probity verify ./my-model --signature my-model.sig --key signing-key.pub --ignore-paths README.md\n  probity verify ./my-model --signature my-model.sig --certificate-chain ca.crt\n  probity verify ./my-model --signature model.sig --identity you@example.com --issuer https://accounts.google.com"
    )]
    Verify {
        /// The model: the folder (or single file) that was signed.
        #[arg(value_name = "MODEL")]
        model: PathBuf,
        /// The signature file (a Sigstore bundle, JSON).
        #[arg(long, value_name = "FILE")]
        signature: PathBuf,
        /// Key mode: the ECDSA public key, PEM (BEGIN PUBLIC KEY), P-256 or P-384, paired with the signing key.
        #[arg(
            long,
            value_name = "PUB.pem",
            required_unless_present_any = ["certificate_chain", "identity", "key_fingerprint"],
            conflicts_with_all = ["certificate_chain", "identity", "key_fingerprint"]
        )]
        key: Option<PathBuf>,
        /// Certificate mode, pinned: the SHA-256 fingerprint (hex) of the signing certificate's public key, as `probity sign` and `probity verify` print it for a key; the pin is the trust (no chain, no validity dates). A key-mode signature cannot be checked this way: it does not carry its key.
        #[arg(
            long = "key-fingerprint",
            value_name = "HEX",
            conflicts_with_all = ["certificate_chain", "identity"]
        )]
        key_fingerprint: Option<String>,
        /// Certificate mode: PEM files of trusted certificates (roots or intermediates). The signing certificate in the signature must chain to one of them (through the certificates the signature carries), be valid now, and be allowed to sign (key usage digitalSignature or extended key usage codeSigning). Repeat for several.
        #[arg(
            long = "certificate-chain",
            value_name = "PEM",
            conflicts_with = "identity"
        )]
        certificate_chain: Vec<PathBuf>,
        /// Keyless mode (Sigstore public good): the identity the Fulcio signing certificate must name (an email address or a workload URI, matched exactly). Needs --issuer. Checked offline against the Sigstore trusted root built into Probity, with the Rekor entry the signature carries.
        #[arg(long, value_name = "IDENTITY", requires = "issuer")]
        identity: Option<String>,
        /// Keyless mode: the OIDC issuer that vouched for --identity (e.g. https://accounts.google.com, https://token.actions.githubusercontent.com).
        #[arg(long, value_name = "URL", requires = "identity")]
        issuer: Option<String>,
        /// A path to leave out when hashing MODEL, relative to MODEL (a folder leaves out everything under it; an absolute path must lie inside MODEL). Repeat for several.
        #[arg(long = "ignore-paths", value_name = "PATH")]
        ignore_paths: Vec<PathBuf>,
        /// Append a provenance record (the model's manifest, the signature status and signer, who ran it) to this ledger when the verification succeeds or fails (not on an input error). Default: PROBITY_LEDGER, else `ledger` in the [provenance] table of probity.toml in the current directory. A ledger that cannot be written exits 2.
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
    },
    /// Show a model's provenance history from the ledger, or check the ledger's hash chain.
    #[command(
        long_about = "Show the history the ledger holds of MODEL (or of every model without it), in the order the records were appended: each version (revision, commit, root digest of its files), who changed it upstream and when (Hugging Face commits since the last recorded revision; the MLflow version's creator and source run), the lineage it claims (base model, datasets), who ran the command (user@host, or the CI identity with its run URL), the command, the verdict and finding counts, the signature status, and which files were added, removed or changed since the previous record of the same model.\n\nMODEL is matched against each record's source (as given to scan, deep or verify), its model key (hf://ORG/NAME or models:/NAME for every revision or version), its local path (canonicalised), or a root digest (or a prefix of at least 8 hex digits).\n\nWith --verify, the hash chain of the whole ledger is checked instead: every record's digest is recomputed over the previous record's digest and its body, and the first record that was edited, deleted or moved is named. Deleting the last records (or rewriting the whole chain, which anyone who can write the file can do) leaves a valid chain: only a head digest kept elsewhere shows it. `log --verify` prints the head digest; pin it (a CI artifact, a protected variable) and later pass it with --expect-head: the check then also fails when that record is no longer in the ledger.",
        after_help = "Exit codes: 0 = history shown, or chain intact; 1 = chain broken (--verify, --expect-head), with one line naming the record and the reason; 2 = error (no ledger configured, unreadable file, not a Probity ledger).\n\nExamples:\n  probity log ./my-model --ledger provenance.db\n  probity log hf://acme/tiny --format json\n  probity log --verify --ledger provenance.db\n  probity log --verify --expect-head sha256:3f1a... --ledger provenance.db"
    )]
    Log {
        /// The model: a path, a URI (hf://ORG/NAME[@REV], models:/NAME[/VERSION], runs:/...) or a root digest. Default: every record.
        #[arg(value_name = "MODEL")]
        model: Option<String>,
        /// The ledger file. Default: PROBITY_LEDGER, else `ledger` in the [provenance] table of probity.toml in the current directory.
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Check the hash chain of the whole ledger instead of showing history.
        #[arg(long)]
        verify: bool,
        /// With --verify (implied): fail unless the record with this digest (sha256:HEX, as `log --verify` printed it) is still in the ledger, which detects deleted last records and a rewritten chain.
        #[arg(long, value_name = "DIGEST")]
        expect_head: Option<String>,
    },
    /// Compare two versions of a model: files, tensors, security-relevant settings, ΔW; flag an unexpected update.
    #[command(
        long_about = "Compare two versions of a model, OLD and NEW: local folders (or single model files), Hugging Face repositories (hf://ORG/NAME@REVISION) or MLflow models (models:/NAME/VERSION, models:/NAME@ALIAS), fetched into the cache as `probity scan` fetches them, or records of the ledger (ledger:SEQ, numbered as `probity log` shows them: only their files, signature status and upstream authors are compared, as the ledger holds no tensors or settings; the ledger's hash chain must be intact).\n\nReported: files added, removed and changed, by SHA-256 (the root digest is OpenSSF model signing's, so it equals the one `probity sign` records; model.sig and .git, .gitattributes, .github, .gitignore are left out); tensors added, removed, re-shaped or re-typed, from the safetensors and GGUF headers (no weights read); security-relevant settings added, removed or changed: config.json auto_map, trust_remote_code, architectures, model_type, _name_or_path; tokenizer_config.json chat_template, auto_map, special tokens (bos/eos/pad/unk/sep/cls/mask, additional_special_tokens, added_tokens_decoder), special_tokens_map.json, tokenizer.json added_tokens, chat_template.json, *.jinja files, GGUF tokenizer.chat_template*, special token IDs, general.architecture and general.base_model.*; README.md front matter base_model; adapter_config.json base_model_name_or_path; and, when both load as the same architecture (deep feature), the spectral summary of ΔW = NEW − OLD (as `probity spectral NEW --base OLD`), or why it was not done.\n\nTwo versions of a data set (data files, or folders of them without model files) are compared example by example instead: rows added, removed and changed (same prompt, new answer), and the suspect phrases `probity data` finds in each; a new suspect phrase is an unexpected update (new-suspect-phrase).\n\nAn unexpected update is any of: weights changed under the same tag (both inputs name the same Hub repository and revision label, or the same MLflow model and alias, and a weight file differs); new remote code (a .py file added or changed, auto_map added or changed, trust_remote_code turned on); a changed chat template; a new unsigned version (OLD's model.sig valid, NEW's missing or invalid); an author outside [provenance] trusted_authors of the policy file (Hub commit authors; MLflow user_id; a local folder's author is unknown and not checked). See docs/provenance-diff.md.",
        after_help = "Exit codes: 0 = no unexpected update; 1 = an unexpected update (each reason listed); 2 = an input could not be read (one line: probity: PATH: reason).\n\nExamples:\n  probity diff ./model-v1 ./model-v2\n  probity diff hf://org/name@v1.0 hf://org/name@main --format json\n  probity diff models:/fraud/3 models:/fraud/4 --config probity.toml\n  probity diff ./old ./new --key signing-key.pub --no-spectral\n  probity diff ledger:3 ledger:7 --ledger provenance.db\n  probity diff train-v1.jsonl train-v2.jsonl"
    )]
    Diff(diff::DiffArgs),
    /// List the rule catalogue (IDs, severities and documentation).
    Rules {
        /// Output format (markdown is the content of docs/rules.md).
        #[arg(long, value_enum, default_value = "text")]
        format: RulesFormat,
    },
    /// List the formats the static scan reads, in the order they are recognised, with the rules each reports.
    Formats {
        /// Output format (markdown is the content of docs/formats.md).
        #[arg(long, value_enum, default_value = "text")]
        format: RulesFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// The policy: the file given with --config, else `probity.toml` in the
/// current directory (never one inside a scanned folder: a model's own files
/// must not be able to weaken the policy that judges them), else defaults.
pub(crate) fn load_config(config: Option<PathBuf>) -> Result<Config, crate::config::ConfigError> {
    match config.or_else(|| Some(PathBuf::from("probity.toml")).filter(|p| p.is_file())) {
        Some(p) => Config::load(&p),
        None => Ok(Config::default()),
    }
}

/// Writes a static scan report in the chosen format (and the SBOM).
pub(crate) fn emit_scan_report(
    report: &Report,
    format: ScanFormat,
    output: Option<&Path>,
    color: ColorChoice,
    verbose: bool,
    gate: Severity,
    sbom: Option<&Path>,
) -> Result<(), ExitCode> {
    if let Some(p) = sbom {
        if let Err(e) = std::fs::write(p, render::cyclonedx::render(report)) {
            return Err(fail(format!("cannot write {}: {e}", p.display())));
        }
    }
    let to_tty = output.is_none() && std::io::stdout().is_terminal();
    let text = match format {
        ScanFormat::Json => render::json::render(report),
        ScanFormat::Sarif => render::sarif::render(report),
        ScanFormat::Cyclonedx => render::cyclonedx::render(report),
        ScanFormat::Text => render::text::render(
            report,
            &render::text::TextOptions {
                color: match color {
                    ColorChoice::Always => true,
                    ColorChoice::Never => false,
                    ColorChoice::Auto => to_tty && std::env::var_os("NO_COLOR").is_none(),
                },
                verbose,
                gate,
            },
        ),
    };
    match output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text.as_bytes()) {
                return Err(fail(format!("cannot write {}: {e}", p.display())));
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                // stdout closed (e.g. piped into `head`): the exit code still tells the verdict
            }
        }
    }
    Ok(())
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("probity: {}", first_line(&msg.to_string()));
    ExitCode::from(2)
}

/// The first line of an error message: candle's errors carry a backtrace
/// after it when RUST_BACKTRACE is set, and an error is one line.
pub(crate) fn first_line(msg: &str) -> &str {
    msg.lines().next().unwrap_or_default().trim_end()
}

/// A failed `sign` or `verify`: one `probity: ` line per reason on standard
/// error, exit 1 (verification failed) or 2 (an input error).
fn provenance_failure(e: probity_provenance::Error) -> ExitCode {
    for line in e.lines() {
        eprintln!("probity: {line}");
    }
    ExitCode::from(e.exit_code())
}

/// The help after `probity scan --help`'s options: exit codes, the formats
/// read (from the scanner's registry, so the list cannot go stale) and
/// examples.
fn scan_after_help() -> String {
    let mut s = String::from("Exit codes: 0 = no finding at or above the gate; 1 = findings at or above the gate; 2 = an input could not be scanned (missing path, permission, I/O error) or a usage error.\n\nFormats are detected from content, never from extensions alone, at any depth inside archives:\n");
    for line in probity_scan::registry::summaries() {
        s.push_str("  - ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str("Other files are listed as not analysed (SCN001). Directories are walked recursively; symbolic links are followed only to regular files inside the scanned tree.\n\nExamples:\n  probity scan ./my-model\n  probity scan models/ --format json --output report.json\n  probity scan models/ --format sarif --output probity.sarif   (GitHub code scanning)\n  probity rules                                               (what each rule ID means)");
    s
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "deep")]
    if matches!(
        cli.command,
        Command::Spectral(_) | Command::Deep(_) | Command::Diff(_)
    ) {
        deep_cmd::private_runtime_dir();
    }
    match cli.command {
        #[cfg(feature = "deep")]
        Command::Worker => ExitCode::from(probity_deep::harness::worker::main() as u8),
        #[cfg(feature = "deep")]
        Command::Deep(args) => deep_cmd::deep(args),
        #[cfg(feature = "deep")]
        Command::Spectral(args) => deep_cmd::spectral(args),
        Command::Diff(args) => diff::run(args),
        Command::Data(args) => data_cmd::run(args),
        Command::Serve(args) => serve_cmd::serve(args),
        Command::Token(c) => serve_cmd::token(c),
        Command::Watch(args) => serve_cmd::watch(args),
        Command::Alerts(c) => serve_cmd::alerts(c),
        Command::Sign {
            model,
            key,
            certificate,
            certificate_chain,
            signature,
            ignore_paths,
            no_ignore_git_paths,
            allow_symlinks,
        } => {
            let opts = probity_provenance::HashOptions {
                ignore_paths,
                allow_symlinks,
            };
            let signed = probity_provenance::read_private_key(&key).and_then(|k| {
                let certs = match &certificate {
                    Some(c) => {
                        probity_provenance::read_signing_certificates(c, &certificate_chain, &k)?
                    }
                    None => Vec::new(),
                };
                probity_provenance::sign(
                    &model,
                    &k,
                    &certs,
                    &signature,
                    &opts,
                    !no_ignore_git_paths,
                )
            });
            match signed {
                Ok(s) => {
                    println!(
                        "signed {}: {} files, root digest sha256:{}, by {} -> {}",
                        model.display(),
                        s.files,
                        s.root_digest,
                        s.signer,
                        signature.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => provenance_failure(e),
            }
        }
        Command::Verify {
            model,
            signature,
            key,
            certificate_chain,
            identity,
            issuer,
            ignore_paths,
            key_fingerprint,
            ledger,
        } => {
            let ledger = match ledger_cmd::destination_from_cwd(ledger) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let opts = probity_provenance::HashOptions {
                ignore_paths,
                allow_symlinks: false,
            };
            if let Some(f) = &key_fingerprint {
                let hex = f.trim_start_matches("sha256:");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return fail(format!(
                        "--key-fingerprint {f}: not a SHA-256 fingerprint (64 hex digits)"
                    ));
                }
            }
            let trust = match (&key, identity, issuer) {
                (Some(k), _, _) => {
                    probity_provenance::read_public_key(k).map(probity_provenance::Trust::Key)
                }
                (None, None, None) if key_fingerprint.is_some() => {
                    Ok(probity_provenance::Trust::Fingerprint(
                        key_fingerprint
                            .unwrap_or_default()
                            .trim_start_matches("sha256:")
                            .to_ascii_lowercase(),
                    ))
                }
                (None, Some(identity), Some(issuer)) => {
                    Ok(probity_provenance::Trust::Keyless { identity, issuer })
                }
                _ => probity_provenance::read_certificates(&certificate_chain)
                    .map(probity_provenance::Trust::Certificates),
            };
            let verified =
                trust.and_then(|t| probity_provenance::verify(&model, &signature, &t, &opts));
            if let Some(l) = &ledger {
                let sig = match &verified {
                    Ok(v) => Some(serde_json::json!({
                        "status": "verified",
                        "signer": v.signer,
                        "signed_root_digest": v.root_digest,
                        "signature_file": signature.display().to_string(),
                    })),
                    Err(probity_provenance::Error::Failed(lines)) => Some(serde_json::json!({
                        "status": "failed",
                        "reasons": lines,
                        "signature_file": signature.display().to_string(),
                    })),
                    Err(_) => None,
                };
                if let Some(sig) = sig {
                    let code = if verified.is_ok() { 0 } else { 1 };
                    let entry = ledger_cmd::Entry {
                        subject: ledger_cmd::Subject {
                            input: model.display().to_string(),
                            root: model.clone(),
                            origin: None,
                            ignore: vec![signature.clone()],
                        },
                        verdict: serde_json::json!({
                            "result": if code == 0 { "verified" } else { "failed" },
                            "exit_code": code,
                        }),
                        signature: sig,
                        extra: Default::default(),
                    };
                    if let Err(e) = ledger_cmd::append(l, "verify", false, vec![entry]) {
                        if let Err(v) = verified {
                            for line in v.lines() {
                                eprintln!("probity: {line}");
                            }
                        }
                        return ledger_cmd::ledger_failure(l, e);
                    }
                }
            }
            match verified {
                Ok(v) => {
                    println!(
                        "verified {}: {} files, root digest sha256:{}, signed by {}",
                        model.display(),
                        v.files,
                        v.root_digest,
                        v.signer
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => provenance_failure(e),
            }
        }
        Command::Log {
            model,
            ledger,
            format,
            verify,
            expect_head,
        } => ledger_cmd::log(model, ledger, format, verify, expect_head),
        Command::Rules { format } => {
            let s = match format {
                RulesFormat::Text => probity_scan::catalogue::text(),
                RulesFormat::Markdown => probity_scan::catalogue::markdown(),
                RulesFormat::Json => {
                    // each rule with the CVEs its findings can name
                    let rules: Vec<serde_json::Value> = probity_scan::catalogue::all()
                        .into_iter()
                        .map(|r| {
                            let mut v = serde_json::to_value(r).unwrap_or_default();
                            v["cves"] = probity_scan::cves::for_rule(r.id).into();
                            v
                        })
                        .collect();
                    let mut s = serde_json::to_string_pretty(&rules).unwrap_or_default();
                    s.push('\n');
                    s
                }
            };
            print!("{s}");
            ExitCode::SUCCESS
        }
        Command::Formats { format } => {
            let s = match format {
                RulesFormat::Text => probity_scan::registry::text(),
                RulesFormat::Markdown => probity_scan::registry::markdown(),
                RulesFormat::Json => {
                    let mut s = serde_json::to_string_pretty(&probity_scan::registry::docs())
                        .unwrap_or_default();
                    s.push('\n');
                    s
                }
            };
            print!("{s}");
            ExitCode::SUCCESS
        }
        Command::Scan {
            paths,
            offline,
            format,
            output,
            fail_on,
            jobs,
            config,
            hash,
            download,
            fail_on_incomplete,
            sbom,
            verbose,
            color,
            require_signature,
            signature,
            signer_keys,
            certificate_chain,
            key_fingerprints,
            identity,
            issuer,
            ledger,
            server,
            token,
        } => {
            if let Some(server) = server {
                let local_only = [
                    (offline, "--offline"),
                    (jobs.is_some(), "--jobs"),
                    (config.is_some(), "--config"),
                    (signature.is_some(), "--signature"),
                    (
                        !signer_keys.is_empty()
                            || !certificate_chain.is_empty()
                            || !key_fingerprints.is_empty()
                            || identity.is_some(),
                        "a signer flag",
                    ),
                    (ledger.is_some(), "--ledger"),
                    (download, "--download"),
                    (fail_on_incomplete, "--fail-on-incomplete"),
                ];
                if let Some((_, flag)) = local_only.iter().find(|(on, _)| *on) {
                    return fail(format!("{flag} does not apply with --server: the service scans with its own policy, signers and ledger"));
                }
                let hash =
                    hash.is_some() || sbom.is_some() || matches!(format, ScanFormat::Cyclonedx);
                let gate: Severity = fail_on.map(Into::into).unwrap_or(Severity::Warning);
                let mut options = serde_json::Map::new();
                if let Some(g) = fail_on {
                    options.insert("fail_on".into(), Severity::from(g).to_string().into());
                }
                if hash {
                    options.insert("hash".into(), true.into());
                }
                if require_signature {
                    options.insert("require_signature".into(), true.into());
                }
                let report =
                    match serve_cmd::remote_scan(&server, token, &paths, options.into(), gate) {
                        Ok(r) => r,
                        Err(e) => return fail(e),
                    };
                if let Err(code) = emit_scan_report(
                    &report,
                    format,
                    output.as_deref(),
                    color,
                    verbose,
                    gate,
                    sbom.as_deref(),
                ) {
                    return code;
                }
                return ExitCode::from(report.exit_code() as u8);
            }
            let _ = token;
            let hash_mode = hash.or((sbom.is_some() || matches!(format, ScanFormat::Cyclonedx))
                .then_some(HashMode::Listing));
            let hash = hash_mode.is_some();
            let cfg = match load_config(config) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            // the signature policy: flags add to the config's signers
            let mut cli_signers: Vec<crate::config::Signer> = signer_keys
                .into_iter()
                .map(|k| crate::config::Signer {
                    key: Some(k),
                    ..Default::default()
                })
                .collect();
            if !certificate_chain.is_empty() {
                cli_signers.push(crate::config::Signer {
                    certificate_chain: Some(certificate_chain),
                    ..Default::default()
                });
            }
            for f in key_fingerprints {
                let hex = f.trim_start_matches("sha256:");
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return fail(format!(
                        "--key-fingerprint {f}: not a SHA-256 fingerprint (64 hex digits)"
                    ));
                }
                cli_signers.push(crate::config::Signer {
                    fingerprint: Some(f),
                    ..Default::default()
                });
            }
            if let (Some(identity), Some(issuer)) = (identity, issuer) {
                cli_signers.push(crate::config::Signer {
                    identity: Some(identity),
                    issuer: Some(issuer),
                    ..Default::default()
                });
            }
            let require_signature = require_signature || cfg.provenance.require_signature;
            if !require_signature && (!cli_signers.is_empty() || signature.is_some()) {
                return fail("--key, --certificate-chain, --key-fingerprint, --identity and --signature name what a required signature is checked against: add --require-signature");
            }
            let signers = if require_signature {
                let mut s = match signature::accepted(&cli_signers, Path::new("")) {
                    Ok(s) => s,
                    Err(e) => return fail(e),
                };
                match signature::accepted(&cfg.provenance.signers, &cfg.dir) {
                    Ok(c) => s.extend(c),
                    Err(e) => return fail(e),
                }
                if s.is_empty() {
                    return fail("--require-signature: no accepted signer; give --key, --certificate-chain, --key-fingerprint or --identity/--issuer, or [[provenance.signers]] in probity.toml");
                }
                if signature.is_some() && paths.len() != 1 {
                    return fail("--signature names the signature of one model: give one PATH|URI");
                }
                s
            } else {
                Vec::new()
            };
            let sig_name = cfg
                .provenance
                .signature
                .clone()
                .unwrap_or_else(|| "model.sig".to_string());
            let gate: Severity = match fail_on {
                Some(g) => g.into(),
                None => cfg
                    .fail_on
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(Severity::Warning),
            };
            let ctx = Ctx {
                extra_allowed: cfg.allowed(),
                ignored_rules: cfg.ignored(),
                hash,
                torchscript: false,
            };
            if let Some(n) = jobs {
                if n == 0 {
                    return fail("--jobs must be at least 1");
                }
                // Only fails if a global pool exists already, which it cannot here.
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global();
            }
            let ledger = ledger_cmd::destination(ledger, cfg.provenance.ledger.clone());
            // remote files are read in place unless something needs every byte
            let whole_because = if download {
                Some("--download")
            } else if hash_mode == Some(HashMode::Verify) {
                Some("--hash=verify computes every digest")
            } else if require_signature {
                Some("the signature check hashes every file")
            } else if ledger.is_some() {
                Some("the ledger records every file's digest")
            } else {
                None
            };
            let resolved = match crate::remote::resolve(
                &paths,
                offline,
                std::io::stderr().is_terminal(),
                whole_because.is_none(),
            ) {
                Ok(r) => r,
                Err(e) => return fail(e),
            };
            if let Some(why) = whole_because {
                if !offline && resolved.sources.iter().any(|s| s.origin.is_some()) {
                    eprintln!("probity: remote files fetched whole into the cache ({why})");
                }
            }
            let crate::remote::Resolved {
                local: paths,
                targets: remote_targets,
                in_place,
                notes,
                sources,
            } = resolved;
            // the models whose signature is checked: each input as given
            let models: Vec<(String, PathBuf)> = sources
                .iter()
                .map(|s| (s.input.clone(), s.root.clone()))
                .collect();
            let mut walk = probity_scan::walk::collect(&paths);
            walk.targets.extend(remote_targets);
            let total = walk.targets.len() + in_place.iter().map(Vec::len).sum::<usize>();
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total as u64),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if total < 2 || !std::io::stderr().is_terminal() {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} scanning {pos}/{len} files {wide_bar} {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut files = probity_scan::scan_walk(walk, &ctx, &|_| bar.inc(1));
            let read = crate::remote::range::scan_in_place(&in_place, &ctx, &|| bar.inc(1));
            bar.finish_and_clear();
            for n in &notes {
                eprintln!("probity: {n}");
            }
            if let Some(line) = crate::remote::range::summary(&read) {
                eprintln!("probity: {line}");
            }
            files.extend(read);
            // per-path overrides: rules silenced for matching paths only
            let overrides = cfg.path_overrides();
            if !overrides.is_empty() {
                for f in &mut files {
                    let rel = f.path.trim_start_matches("./").to_string();
                    let silenced: std::collections::HashSet<&String> = overrides
                        .iter()
                        .filter(|(g, _)| g.is_match(&rel))
                        .flat_map(|(_, rules)| rules.iter())
                        .collect();
                    if !silenced.is_empty() {
                        f.findings.retain(|x| !silenced.contains(&x.rule));
                    }
                }
            }
            probity_scan::coverage::assess(&mut files);
            if require_signature {
                for (display, root) in &models {
                    if !root.exists() {
                        continue; // reported by the scan as an unreadable input
                    }
                    let sig = signature::signature_path(root, &sig_name, signature.as_deref());
                    files.push(signature::check(display, root, &sig, &signers));
                }
            }
            let mut report = Report::new(files, gate);
            if fail_on_incomplete {
                report.require_complete();
            }
            for f in &report.files {
                if let Some(e) = &f.error {
                    eprintln!("probity: {e}");
                }
            }
            if let Err(code) = emit_scan_report(
                &report,
                format,
                output.as_deref(),
                color,
                verbose,
                gate,
                sbom.as_deref(),
            ) {
                return code;
            }
            if let Some(l) = &ledger {
                let entries = sources
                    .into_iter()
                    .map(|src| {
                        let files: Vec<&probity_report::FileReport> = report
                            .files
                            .iter()
                            .filter(|f| {
                                if src.origin.is_some() {
                                    src.displays.contains(&f.path) || f.path == src.input
                                } else {
                                    ledger_cmd::under_input(&f.path, &src.input)
                                }
                            })
                            .collect();
                        let sig = files
                            .iter()
                            .find(|f| f.path == src.input && f.format == signature::FORMAT)
                            .map(|f| signature::ledger_status(f))
                            .unwrap_or_else(|| serde_json::json!({"status": "not checked"}));
                        ledger_cmd::Entry {
                            verdict: ledger_cmd::scan_verdict(&files, gate),
                            subject: ledger_cmd::Subject {
                                input: src.input,
                                // the manifest is the signature's: without
                                // the signature file itself
                                ignore: match &signature {
                                    Some(p) if models.len() == 1 => vec![p.clone()],
                                    _ => vec![src.root.join(&sig_name)],
                                },
                                root: src.root,
                                origin: src.origin,
                            },
                            signature: sig,
                            extra: Default::default(),
                        }
                    })
                    .collect();
                if let Err(e) = ledger_cmd::append(l, "scan", offline, entries) {
                    return ledger_cmd::ledger_failure(l, e);
                }
            }
            ExitCode::from(report.exit_code() as u8)
        }
    }
}
