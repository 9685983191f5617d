//! A deliberately rude HTTP/1.1 server for the hostile-registry tests: plain threads over
//! `std::net`, on 127.0.0.1 and a free port, answering each request with whatever the
//! test's closure writes on the raw socket (wrong lengths, endless bodies, silence,
//! redirect loops), which a well-behaved HTTP library would refuse to produce.
//!
//! Every response should close its connection (write `Connection: close`); the server
//! reads one request per connection. It records each request line, and stops (and lets
//! sleeping handlers give up) when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the handler sees it.
pub struct Request {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler gets besides the request: the socket and the stop flag.
pub struct Reply<'a> {
    /// The connection, to write anything at all on.
    pub stream: &'a mut TcpStream,
    stop: &'a AtomicBool,
}

impl Reply<'_> {
    /// Writes a complete response with a body and `Connection: close`.
    pub fn send(&mut self, status: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        let _ = self.stream.write_all(head.as_bytes());
        let _ = self.stream.write_all(body);
    }

    /// Whether the server is being dropped: long-running handlers return when it is.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `duration`, returning early when the server stops.
    pub fn sleep(&self, duration: Duration) {
        let deadline = std::time::Instant::now() + duration;
        while std::time::Instant::now() < deadline && !self.stopping() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

type Handler = dyn Fn(&Request, &mut Reply) + Send + Sync;

/// The running server.
pub struct HostileServer {
    port: u16,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl HostileServer {
    /// Starts serving every connection with `handler`.
    pub fn start(handler: impl Fn(&Request, &mut Reply) + Send + Sync + 'static) -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let (stop, log) = (stop.clone(), log.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (stop, log, handler) = (stop.clone(), log.clone(), handler.clone());
                    std::thread::spawn(move || serve(stream, &stop, &log, &*handler));
                }
            });
        }
        HostileServer { port, stop, log }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request line received so far (`GET /v2/…`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, stop: &AtomicBool, log: &Mutex<Vec<String>>, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(format!("{method} {path}"));
    let request = Request {
        method,
        path,
        headers,
    };
    let mut stream = stream;
    let mut reply = Reply {
        stream: &mut stream,
        stop,
    };
    handler(&request, &mut reply);
    let _ = stream.flush();
}
