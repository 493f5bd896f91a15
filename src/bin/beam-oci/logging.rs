//! Logging for beam-oci: runc's shapes, so podman/conmon can read our --log file.
//! text: `time="…" level=error msg="…"`; json: `{"level":"error","msg":"…","time":"…"}`.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

struct RuncLog {
    out: Mutex<Box<dyn Write + Send>>,
    json: bool,
    max: tracing::Level,
}

#[derive(Default)]
struct Msg(String);

impl Visit for Msg {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.0 += &format!(" {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.0 += &format!(" {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for RuncLog {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max {
            return;
        }
        let mut m = Msg::default();
        event.record(&mut m);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let lvl = level.as_str().to_ascii_lowercase();
        let line = if self.json {
            serde_json::json!({"level": lvl, "msg": m.0, "time": time}).to_string()
        } else {
            format!("time={time:?} level={lvl} msg={:?}", m.0)
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
        }
    }
}

static TO_FILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn init(log: Option<&Path>, json: bool, debug: bool) {
    let out: Box<dyn Write + Send> = match log.map(|p| std::fs::OpenOptions::new().create(true).append(true).open(p)) {
        Some(Ok(f)) => {
            TO_FILE.store(true, std::sync::atomic::Ordering::Relaxed);
            Box::new(f)
        }
        Some(Err(e)) => {
            eprintln!("beam-oci: --log: {e}; logging to stderr");
            Box::new(std::io::stderr())
        }
        None => Box::new(std::io::stderr()),
    };
    let max = if debug { tracing::Level::DEBUG } else { tracing::Level::WARN };
    let _ = tracing_subscriber::registry().with(RuncLog { out: Mutex::new(out), json, max }).try_init();
}

/// The error line on stderr (besides the log): when logging goes to stderr, the log line already said it.
pub fn print_error(msg: &str) {
    if TO_FILE.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("beam-oci: {msg}");
    }
}
