//! A real browser for the console tests: Debian's `chromium`, headless,
//! driven over WebDriver by `chromedriver` (`make chromium` installs both;
//! `CAXTON_TEST_CHROMEDRIVER` and `CAXTON_TEST_CHROMIUM` name others).
//!
//! The client speaks the W3C WebDriver protocol with the HTTP client the
//! tests already use: the handful of commands a test needs (navigate, find,
//! click, type, run a script, screenshot, read the browser's log) do not
//! justify a WebDriver crate and its dependency tree in every build.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The W3C key for an element reference in WebDriver JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a `find` or `wait_for` waits before failing the test.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Log entries a test expects (a refused key's 401), by substring.
    expected: Vec<String>,
}

/// An element of the page (a WebDriver reference).
#[derive(Clone, Debug)]
pub struct Element(String);

/// One entry of the browser's console log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

impl Browser {
    /// Starts chromedriver and a headless chromium at 1280×800 with the
    /// browser log on. Panics with what to install when either is missing.
    pub async fn start() -> Self {
        let driver_bin = program("CAXTON_TEST_CHROMEDRIVER", "chromedriver");
        let chromium = program("CAXTON_TEST_CHROMIUM", "/usr/bin/chromium");
        let port = crate::free_port();
        let profile = tempfile::tempdir().unwrap();
        // Its own process group: dropping the browser kills chromedriver
        // and every chromium process it started, whatever state they are in.
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin} ({e}): `make chromium` installs chromium-driver"));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        crate::eventually("chromedriver answers", Duration::from_secs(20), || async {
            http.get(format!("{base}/status")).send().await.is_ok_and(|r| r.status().is_success())
        })
        .await;
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-extensions".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1280,800".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": 30000, "pageLoad": 30000, "implicit": 0},
        }}});
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session (is {chromium} installed?): {r}"))
            .to_owned();
        Self { http, session: format!("{base}/session/{session}"), driver, _profile: profile, expected: vec![] }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = r["value"]["error"].as_str() {
            panic!("WebDriver {path}: {err}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    async fn try_command(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
        let r: Value = self
            .http
            .request(method, format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match r["value"]["error"].as_str() {
            Some(err) => Err(format!("{err}: {}", r["value"]["message"])),
            None => Ok(r["value"].clone()),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args})).await
    }

    /// Polls `probe` until it gives a value; past [`WAIT`], fails the test
    /// with `what` and the page's text (what a person would have seen).
    async fn until<T, Fut>(&self, what: &str, mut probe: impl FnMut() -> Fut) -> T
    where
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}; page: {}", self.body_text().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first element matching `css`, once there is one.
    pub async fn find(&self, css: &str) -> Element {
        let query = json!({"using": "css selector", "value": css});
        self.until(&format!("no element `{css}`"), || async {
            let found = self.try_command(reqwest::Method::POST, "/element", query.clone()).await.ok()?;
            Some(Element(found[ELEMENT].as_str().unwrap().to_owned()))
        })
        .await
    }

    /// Every element matching `css` now (perhaps none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.post("/elements", json!({"using": "css selector", "value": css})).await;
        v.as_array().unwrap().iter().map(|e| Element(e[ELEMENT].as_str().unwrap().to_owned())).collect()
    }

    /// Whether some element matches `css` now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    pub async fn click(&self, el: &Element) {
        self.post(&format!("/element/{}/click", el.0), json!({})).await;
    }

    /// Clicks the first element matching `css` (once there is one).
    pub async fn click_on(&self, css: &str) {
        let el = self.find(css).await;
        self.click(&el).await;
    }

    /// Types `text` into the element (after what it holds).
    pub async fn type_into(&self, el: &Element, text: &str) {
        self.post(&format!("/element/{}/value", el.0), json!({"text": text})).await;
    }

    /// Replaces what a field holds with `text`, as typing would.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.post(&format!("/element/{}/clear", el.0), json!({})).await;
        self.type_into(&el, text).await;
    }

    pub async fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        let v = self.command(reqwest::Method::GET, &format!("/element/{}/attribute/{name}", el.0), None).await;
        v.as_str().map(str::to_owned)
    }

    pub async fn text(&self, el: &Element) -> String {
        self.command(reqwest::Method::GET, &format!("/element/{}/text", el.0), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The visible text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.text(&el).await
    }

    pub async fn body_text(&self) -> String {
        match self
            .try_command(
                reqwest::Method::POST,
                "/execute/sync",
                json!({"script": "return document.body ? document.body.innerText : ''", "args": []}),
            )
            .await
        {
            Ok(v) => v.as_str().unwrap_or("").to_owned(),
            Err(e) => e,
        }
    }

    /// Waits until `script` (a function body) returns something truthy; returns it.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        self.until(what, || async {
            let v = self.eval(script, json!([])).await;
            (!(v.is_null() || v == json!(false) || v == json!("") || v == json!(0))).then_some(v)
        })
        .await
    }

    /// Waits until the page's text contains `needle`.
    pub async fn wait_text(&self, needle: &str) {
        self.until(&format!("`{needle}` never appeared"), || async {
            self.body_text().await.contains(needle).then_some(())
        })
        .await
    }

    /// Clicks the button inside `within` (CSS) whose text is `label`.
    pub async fn click_button(&self, within: &str, label: &str) {
        let clicked = self
            .eval(
                "const b = [...document.querySelectorAll(arguments[0] + ' button')].find(b => b.innerText === arguments[1]); \
                 if (b) b.click(); return !!b;",
                json!([within, label]),
            )
            .await;
        assert_eq!(clicked, json!(true), "no button `{label}` in `{within}`; page: {}", self.body_text().await);
    }

    /// Presses keys (WebDriver key codes, e.g. "\u{E004}" for Tab) on the focused element.
    pub async fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]
            })
            .collect();
        self.post("/actions", json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})).await;
    }

    /// Follows the system's colour scheme as a person with a dark (or light) desktop would.
    pub async fn set_dark(&self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        self.post(
            "/goog/cdp/execute",
            json!({"cmd": "Emulation.setEmulatedMedia", "params": {"features": [{"name": "prefers-color-scheme", "value": scheme}]}}),
        )
        .await;
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height})).await;
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// Screenshots of the page in the light and the dark theme, as
    /// `NAME-light.png` and `NAME-dark.png` in [`screenshot_dir`]; the
    /// page is left light.
    pub async fn photograph(&self, name: &str) {
        for (dark, theme) in [(false, "light"), (true, "dark")] {
            self.set_dark(dark).await;
            self.screenshot(&screenshot_dir().join(format!("{name}-{theme}.png"))).await;
        }
        self.set_dark(false).await;
    }

    /// The browser log since the last call.
    pub async fn log(&self) -> Vec<LogEntry> {
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or("").to_owned(),
                message: e["message"].as_str().unwrap_or("").to_owned(),
            })
            .collect()
    }

    /// Waits for a log entry containing `needle` (consuming the log).
    pub async fn wait_for_log(&self, needle: &str) -> LogEntry {
        self.until(&format!("no log entry with `{needle}`"), || async {
            self.log().await.into_iter().find(|e| e.message.contains(needle))
        })
        .await
    }

    /// Log entries with this text are what the test provokes (a refused
    /// key), not faults of the page.
    pub fn expect_in_log(&mut self, needle: &str) {
        self.expected.push(needle.to_owned());
    }

    pub fn forget_expected(&mut self) {
        self.expected.clear();
    }

    /// The page now shown, checked as every console test checks a page:
    /// accessible in the light and the dark theme, photographed in both
    /// ([`Browser::photograph`]), and nothing in the log since the last check.
    pub async fn check_page(&self, name: &str) {
        self.assert_accessible(&format!("{name} (light)")).await;
        self.photograph(name).await;
        self.set_dark(true).await;
        self.assert_accessible(&format!("{name} (dark)")).await;
        self.set_dark(false).await;
        self.assert_clean_log(name).await;
    }

    /// Fails on any console error, warning or failed request since the last check.
    pub async fn assert_clean_log(&self, page: &str) {
        let bad: Vec<LogEntry> = self
            .log()
            .await
            .into_iter()
            .filter(|e| matches!(e.level.as_str(), "SEVERE" | "WARNING"))
            .filter(|e| !self.expected.iter().any(|x| e.message.contains(x)))
            .collect();
        assert!(bad.is_empty(), "{page}: the page logged errors or failed requests: {bad:#?}");
    }
}

/// The page's accessibility, checked from the DOM (axe-core is not
/// available here): every control has a label and every button and link a
/// name, images have text alternatives, landmarks and one `h1` exist, no
/// positive `tabindex` reorders focus, and visible text has a contrast of
/// at least 4.5:1 (3:1 when large) against what is behind it. Returns the
/// failures, each naming the element.
const AUDIT: &str = r#"
const fails = [];
const describe = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') + ' "' + (el.innerText || el.value || '').slice(0, 30) + '"';
const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length) && getComputedStyle(el).visibility !== 'hidden';
const named = (el) => {
  if ((el.getAttribute('aria-label') || '').trim()) return true;
  const by = el.getAttribute('aria-labelledby');
  if (by && by.split(' ').every((id) => document.getElementById(id) && document.getElementById(id).textContent.trim())) return true;
  if (el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]')) return true;
  if (el.closest('label')) return true;
  return false;
};
if (!document.documentElement.lang) fails.push('html has no lang');
if (document.querySelectorAll('main').length !== 1) fails.push('not exactly one main landmark');
if (!document.querySelector('nav[aria-label]')) fails.push('no labelled nav landmark');
if (document.querySelectorAll('main h1').length !== 1) fails.push('main has ' + document.querySelectorAll('main h1').length + ' h1');
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  if (!named(el)) fails.push('control without a label: ' + describe(el));
}
for (const el of document.querySelectorAll('button, a[href]')) {
  if (!visible(el)) continue;
  const text = (el.innerText || '').trim() || (el.getAttribute('aria-label') || '').trim() || [...el.querySelectorAll('img[alt]')].map((i) => i.alt).join('').trim();
  if (!text && !(el.closest('svg') && el.getAttribute('aria-label'))) fails.push('button or link without a name: ' + describe(el));
}
for (const el of document.querySelectorAll('img')) if (!el.hasAttribute('alt')) fails.push('image without alt: ' + el.src);
for (const el of document.querySelectorAll('svg[role=img]')) if (!el.getAttribute('aria-label')) fails.push('svg image without a label');
for (const el of document.querySelectorAll('[tabindex]')) if (el.tabIndex > 0) fails.push('positive tabindex: ' + describe(el));
const ids = {};
for (const el of document.querySelectorAll('[id]')) { if (ids[el.id]) fails.push('duplicate id ' + el.id); ids[el.id] = 1; }
const parse = (c) => {
  let m = c.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)/);
  if (m) return [+m[1], +m[2], +m[3], m[4] === undefined ? 1 : +m[4]];
  m = c.match(/color\(srgb ([\d.]+) ([\d.]+) ([\d.]+)(?: \/ ([\d.]+))?\)/);
  if (m) return [m[1] * 255, m[2] * 255, m[3] * 255, m[4] === undefined ? 1 : +m[4]];
  return null;
};
const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let bg = [255, 255, 255, 1];
  if (!layers.length || layers[layers.length - 1][3] < 1) bg = parse(getComputedStyle(document.documentElement).backgroundColor) || bg;
  for (const l of layers.reverse()) bg = over(l, bg);
  return bg;
};
const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
for (const el of document.querySelectorAll('body *')) {
  if (el.closest('svg') || !visible(el) || el.closest('[disabled]') || el.closest('[hidden]')) continue;
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  const st = getComputedStyle(el);
  const fg0 = parse(st.color);
  if (!fg0) continue;
  const bg = background(el);
  const fg = over(fg0, bg);
  const L1 = lum(fg), L2 = lum(bg);
  const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
  const size = parseFloat(st.fontSize), bold = +st.fontWeight >= 700;
  const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  if (ratio < need) fails.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ': ' + describe(el) + ' ' + st.color + ' on ' + bg.map(Math.round).join(','));
}
return fails;
"#;

impl Browser {
    /// Fails the test on any accessibility fault of the page now shown.
    pub async fn assert_accessible(&self, page: &str) {
        let fails = self.eval(AUDIT, json!([])).await;
        let fails: Vec<String> =
            fails.as_array().unwrap().iter().map(|f| f.as_str().unwrap_or_default().to_owned()).collect();
        assert!(fails.is_empty(), "{page} is not accessible:\n{}", fails.join("\n"));
    }

    /// Keyboard order: Tab from the top reaches the skip link first, then
    /// the navigation in reading order, each focused element visible and
    /// marked by an outline.
    /// The page is loaded afresh first, so focus starts at the top.
    pub async fn assert_focus_order(&self, expected_start: &[&str]) {
        let url = self.eval("return location.href", json!([])).await;
        self.command(reqwest::Method::POST, "/refresh", Some(json!({}))).await;
        self.goto(url.as_str().unwrap()).await;
        self.wait_for("the page after a reload", "return document.querySelector('#nav a')").await;
        let mut seen = Vec::new();
        for _ in 0..expected_start.len() {
            self.press("\u{E004}").await;
            let v = self
                .eval(
                    "const e = document.activeElement; const st = getComputedStyle(e); \
                     return [(e.innerText || e.getAttribute('aria-label') || e.value || e.tagName).trim(), \
                             !!(e.offsetWidth || e.offsetHeight), st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0];",
                    json!([]),
                )
                .await;
            let (name, shown, outlined) =
                (v[0].as_str().unwrap_or("").to_owned(), v[1].as_bool().unwrap(), v[2].as_bool().unwrap());
            assert!(shown, "focus went to a hidden element after {seen:?}");
            assert!(outlined, "`{name}` has focus but no visible focus indicator");
            seen.push(name);
        }
        let got: Vec<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(got, expected_start, "keyboard focus order");
    }
}

/// Where the console tests put their screenshots: `CAXTON_SCREENSHOTS`
/// (docs/console to refresh the documentation's), else a scratch directory.
pub fn screenshot_dir() -> std::path::PathBuf {
    match std::env::var_os("CAXTON_SCREENSHOTS") {
        Some(d) => crate::repo_path(d),
        None => std::env::temp_dir().join("caxton-console-screenshots"),
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser processes under it.
        let pgid = self.driver.id() as i32;
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}
