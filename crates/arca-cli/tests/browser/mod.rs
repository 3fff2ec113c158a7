//! A small W3C WebDriver client for driving Debian's headless Chromium through `chromedriver`.
//!
//! Written here rather than pulled in because the tests need a dozen commands, and the blocking
//! `reqwest` client they already use speaks the protocol (JSON over HTTP) directly.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether Chromium and chromedriver are installed; prints why not (or panics where required).
pub fn available() -> bool {
    let ok = Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !ok {
        if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
            panic!("browser tests need chromium and chromedriver (apt install chromium chromium-driver), or ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip");
        }
        eprintln!("skipped: browser test needs Debian's chromium and chromium-driver");
    }
    ok
}

/// A headless Chromium session, closed (with its chromedriver) when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    shots: PathBuf,
    shot_no: usize,
    _profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session; screenshots go to
    /// `shots`.
    pub fn start(shots: &Path) -> Browser {
        let mut driver = Command::new("/usr/bin/chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let mut port = None;
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        for line in lines.by_ref().take(20) {
            let line = line.unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                port = rest.trim().trim_end_matches('.').parse::<u16>().ok();
                break;
            }
        }
        // Keep reading its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let base = format!("http://127.0.0.1:{}", port.expect("chromedriver did not say its port"));
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--window-size=1280,900".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let downloads = tempfile::tempdir().unwrap();
        let prefs = json!({
            "download.default_directory": downloads.path(),
            "download.prompt_for_download": false,
            "download.directory_upgrade": true,
            "safebrowsing.enabled": false,
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args, "prefs": prefs},
        }}});
        let v: Value = http.post(format!("{base}/session")).json_body(&caps).send().unwrap().json_value();
        let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        std::fs::create_dir_all(shots).unwrap();
        let b = Browser {
            driver,
            base,
            session,
            http,
            shots: shots.to_path_buf(),
            shot_no: 0,
            _profile: profile,
            downloads,
        };
        // Headless Chromium saves downloads only when told where (the DevTools protocol, through
        // chromedriver's pass-through).
        let dir = b.downloads.path().to_string_lossy().into_owned();
        b.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Browser.setDownloadBehavior", "params": {"behavior": "allow", "downloadPath": dir}})),
        );
        // Finding an element waits up to 10 s for it (pages load after a form is submitted).
        b.cmd(reqwest::Method::POST, "/timeouts", Some(json!({"implicit": 10_000, "pageLoad": 30_000})));
        b
    }

    /// Waits (up to 10 s) until the current URL ends with `suffix`; returns the URL.
    pub fn wait_url(&self, suffix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url();
            if url.ends_with(suffix) || Instant::now() > deadline {
                return url;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 10 s) until the page's HTML contains `text`; returns the HTML.
    pub fn wait_source(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let html = self.source();
            if html.contains(text) || Instant::now() > deadline {
                return html;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body).unwrap_or_else(|e| panic!("webdriver {path}: {e}"))
    }

    /// A WebDriver command; `Err` has the driver's error object.
    fn try_cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut rb = self.http.request(method, &url);
        if let Some(b) = body {
            rb = rb.json_body(&b);
        }
        let v = rb.send().unwrap().json_value();
        if v["value"].is_object() && v["value"].get("error").is_some() {
            return Err(v["value"].clone());
        }
        Ok(v["value"].clone())
    }

    /// Finds the element matching `css` and runs a command on it. A page that was still being
    /// replaced (a form just submitted) makes the element stale: it is found again on the new
    /// page, for up to 10 s.
    fn on_element(&self, css: &str, method: reqwest::Method, action: &str, body: Option<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.find(css);
            match self.try_cmd(method.clone(), &format!("/element/{e}{action}"), body.clone()) {
                Ok(v) => return v,
                Err(err) if err["error"] == "stale element reference" && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(err) => panic!("webdriver {css} {action}: {err}"),
            }
        }
    }

    /// Opens a URL and waits for the page to load.
    /// Signs in on `base`'s sign-in page and waits for the answer page.
    pub fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.go(&format!("{base}/login"));
        self.fill("#user", user);
        self.fill("#password", password);
        self.click("#signin");
        // Wait for the answer page (the form's page had no #flash/#error/nav yet).
        let _ = self.wait_url("");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.url().ends_with("/login") && !self.source().contains("id=\"error\"") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The page's HTML.
    pub fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None).as_str().unwrap_or_default().to_string()
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> String {
        let v = self.cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    /// Types into the element matching `css`.
    pub fn fill(&self, css: &str, text: &str) {
        self.on_element(css, reqwest::Method::POST, "/clear", Some(json!({})));
        self.on_element(css, reqwest::Method::POST, "/value", Some(json!({"text": text})));
    }

    /// Clicks the element matching `css` (a click that submits a form waits for the new page).
    pub fn click(&self, css: &str) {
        self.on_element(css, reqwest::Method::POST, "/click", Some(json!({})));
    }

    /// Clicks the element matching `css` and waits (up to 10 s) until a new page has loaded in
    /// place of this one. For a form whose answer comes back to the same URL, where waiting for
    /// the URL would return at once and read the page from before the click.
    pub fn click_to_page(&self, css: &str) {
        self.script("window.__arcaBeforeClick = true;");
        self.click(css);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A page being replaced may refuse the script: not loaded yet.
            let js = "return window.__arcaBeforeClick === undefined && document.readyState === 'complete';";
            let body = json!({"script": js, "args": []});
            if self.try_cmd(reqwest::Method::POST, "/execute/sync", Some(body)).is_ok_and(|v| v == json!(true)) {
                return;
            }
            assert!(Instant::now() < deadline, "clicking {css} loaded no new page (still {})", self.url());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The visible text of the element matching `css`.
    pub fn text(&self, css: &str) -> String {
        self.on_element(css, reqwest::Method::GET, "/text", None).as_str().unwrap_or_default().to_string()
    }

    /// An attribute of the element matching `css`.
    pub fn attr(&self, css: &str, name: &str) -> String {
        self.on_element(css, reqwest::Method::GET, &format!("/attribute/{name}"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Sets a cookie of the current page's site (as a stale or forged one would be).
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/cookie",
            Some(json!({"cookie": {"name": name, "value": value, "path": "/"}})),
        );
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = format!("{}/session/{}/cookie/{name}", self.base, self.session);
        let v = self.http.get(url).send().unwrap().json_value();
        v["value"]["value"].as_str().map(str::to_string)
    }

    /// Waits (up to 60 s) for a finished download named `name` and returns its path.
    pub fn wait_download(&self, name: &str) -> PathBuf {
        let path = self.downloads.path().join(name);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let partial = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".crdownload"));
            if path.exists() && !partial {
                return path;
            }
            let present: Vec<String> = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(Instant::now() < deadline, "no download {name} (the folder holds {present:?})");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `js` (a function body; `return` gives the value) in the page and returns its value.
    pub fn script(&self, js: &str) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({"script": js, "args": []})))
    }

    /// Resizes the window to `width` CSS pixels (and 900 high), as a phone or a desktop would be.
    pub fn set_width(&self, width: u32) {
        self.cmd(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": 900})));
    }

    /// Whether the page is wider than the window (a horizontal scroll bar on the whole page).
    pub fn overflows(&self) -> bool {
        self.script("return document.documentElement.scrollWidth > window.innerWidth + 1;").as_bool().unwrap_or(true)
    }

    /// Renders the page for `media` ("print" as the print dialog would, "screen"); "" ends the
    /// override (an override holds while printing too).
    pub fn emulate_media(&self, media: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {"media": media}})),
        );
    }

    /// Prints the page to PDF on A4 paper (WebDriver's "Print Page") and returns its bytes.
    pub fn print_pdf(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.cmd(
            reqwest::Method::POST,
            "/print",
            Some(json!({"page": {"width": 21.0, "height": 29.7}, "background": true})),
        );
        base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("a PDF")).unwrap()
    }

    /// Saves a screenshot as `NN-name.png` in the screenshot directory (the test's artefacts).
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        self.shot_no += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot_no));
        std::fs::write(&path, png).unwrap();
        path
    }
}

trait JsonBody {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBody for reqwest::blocking::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json").body(v.to_string())
    }
}

trait JsonValue {
    fn json_value(self) -> Value;
}

impl JsonValue for reqwest::blocking::Response {
    fn json_value(self) -> Value {
        let text = self.text().unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}
