//! A mini-program that misbehaves on purpose, for the host's sandbox tests.
//!
//! Each route attacks one limit or probes one WASI capability, and every probe
//! that returns answers JSON the tests assert on:
//!
//! | route | what it does | answer |
//! |---|---|---|
//! | `/spin` | loops forever | none: the deadline or fuel must stop it |
//! | `/grow` | allocates and touches 1 MiB chunks forever | none: the memory limit must stop it |
//! | `/recurse` | recurses without bound | none: the stack must overflow |
//! | `/burn?n=N` | N rounds of arithmetic (default 1000000) | `{"n":N,"checksum":C}` |
//! | `/print?bytes=N&lines=M` | N bytes (default 1024) to stdout and to stderr through WASI, M log lines (default 3) | `{"stdout":N,"stderr":N,"log_lines":M}`, counting the bytes each stream took before the host closed it |
//! | `/wasi/file` | lists preopened directories, opens `etc/passwd` under each | `{"preopens":0,"opened":false}` |
//! | `/wasi/env` | reads the environment and arguments | `{"env":0,"args":0}` |
//! | `/wasi/socket` | creates a TCP socket, connects it to 127.0.0.1:5432, resolves `localhost` | `{"tcp_socket":"error: access-denied","connected":false,"connect":"...","lookup":"error: ..."}` |
//! | `/wasi/clock` | reads the clocks and random bytes, which are allowed | `{"wall_clock_seconds":S,"monotonic_nanos":M,"random_bytes":16}` |
//! | `/headers` | lists the request headers it was given, to look for credentials | `{"names":"accept,host,..."}` |
//! | `/respond?status=S&name=N&value=V` | answers status S (default 200) with the header `N: V` (default none), whatever they are | empty body |
//!
//! Events: topic `reject` is refused with an error, topic `spin` loops
//! forever, any other topic is acknowledged.

use core::hint::black_box;

use miniapp_sdk::{Event, MiniProgram, Params, Request, Response, Router, info, json, warn};
use wasi::sockets::network::{
    ErrorCode as NetworkError, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Network,
};

/// The program's type, exported below.
pub struct Hostile;

impl MiniProgram for Hostile {
    fn handle(request: Request) -> Response {
        info!("{} {}", request.method, request.path);
        Router::new()
            .get("/spin", |_, _| spin())
            .get("/grow", |_, _| grow())
            .get("/recurse", recurse_route)
            .get("/burn", burn_route)
            .get("/print", print_route)
            .get("/wasi/file", |_, _| probe_files())
            .get("/wasi/env", |_, _| probe_environment())
            .get("/wasi/socket", |_, _| probe_sockets())
            .get("/wasi/clock", |_, _| probe_clocks())
            .get("/headers", |request, _| header_names(request))
            .get("/respond", |request, _| respond_as_told(request))
            .handle(&request)
    }

    fn on_event(event: Event) -> Result<(), String> {
        info!("event {} {}", event.id, event.topic);
        match event.topic.as_str() {
            "reject" => Err(format!("event {} rejected on purpose", event.id)),
            "spin" => spin(),
            _ => Ok(()),
        }
    }
}

miniapp_sdk::export!(Hostile);

/// Loops forever; `black_box` keeps the optimizer from removing the loop.
fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, writing to every page so that each one is
/// really committed, and keeps them all alive.
fn grow() -> ! {
    const CHUNK: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for (index, byte) in chunk.iter_mut().step_by(PAGE).enumerate() {
            *byte = index as u8 | 1;
        }
        chunks.push(black_box(chunk));
        black_box(&chunks);
    }
}

fn recurse_route(_: &Request, _: &Params) -> Response {
    let depth = recurse(black_box(0));
    // Unreachable in practice: there is no base case a real depth reaches.
    Response::text(500, format!("recursion ended at depth {depth}"))
}

/// Recurses without a reachable base case. The result of each call is used
/// after it returns, through `black_box`, so the call is not in tail position
/// and cannot be turned into a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let below = recurse(black_box(depth + 1));
    black_box(below).wrapping_add(depth)
}

fn burn_route(request: &Request, _: &Params) -> Response {
    let Some(rounds) = number_param(request, "n", 1_000_000) else {
        return Response::text(400, "n must be a non-negative integer");
    };
    let body = json::Object::new()
        .number("n", rounds)
        .number("checksum", burn(rounds))
        .finish();
    Response::json_raw(200, body)
}

/// Work proportional to `rounds`: a xorshift-multiply mix that the optimizer
/// can neither skip nor turn into a closed form.
fn burn(rounds: u64) -> u64 {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..rounds {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state = state
            .wrapping_mul(0x2545_F491_4F6C_DD1D)
            .wrapping_add(round);
    }
    state
}

fn print_route(request: &Request, _: &Params) -> Response {
    let (Some(bytes), Some(lines)) = (
        number_param(request, "bytes", 1024),
        number_param(request, "lines", 3),
    ) else {
        return Response::text(400, "bytes and lines must be non-negative integers");
    };
    let stdout = write_pattern(&wasi::cli::stdout::get_stdout(), b'o', bytes);
    let stderr = write_pattern(&wasi::cli::stderr::get_stderr(), b'e', bytes);
    for line in 0..lines {
        info!("print: log line {line} of {lines}");
    }
    let body = json::Object::new()
        .number("stdout", stdout)
        .number("stderr", stderr)
        .number("log_lines", lines)
        .finish();
    Response::json_raw(200, body)
}

/// Writes `total` bytes of `fill` to `stream`, as lines of 64 bytes (the
/// 64th a newline), and returns how many bytes were accepted before the
/// stream closed or failed.
fn write_pattern(stream: &wasi::io::streams::OutputStream, fill: u8, total: u64) -> u64 {
    const LINE: usize = 64;
    // The most `blocking-write-and-flush` takes at once.
    const MAX_WRITE: usize = 4096;
    let mut block = [fill; MAX_WRITE];
    for line_end in block.iter_mut().skip(LINE - 1).step_by(LINE) {
        *line_end = b'\n';
    }
    let mut written = 0u64;
    while written < total {
        let size = (total - written).min(MAX_WRITE as u64) as usize;
        if stream.blocking_write_and_flush(&block[..size]).is_err() {
            warn!("print: stream closed after {written} bytes");
            break;
        }
        written += size as u64;
    }
    written
}

fn probe_files() -> Response {
    let preopens = wasi::filesystem::preopens::get_directories();
    let mut opened = false;
    for (directory, name) in &preopens {
        let attempt = directory.open_at(
            wasi::filesystem::types::PathFlags::empty(),
            "etc/passwd",
            wasi::filesystem::types::OpenFlags::empty(),
            wasi::filesystem::types::DescriptorFlags::READ,
        );
        match attempt {
            Ok(_) => {
                warn!("wasi/file: opened etc/passwd under preopen {name:?}");
                opened = true;
            }
            Err(error) => info!("wasi/file: {name:?}: {}", error.name()),
        }
    }
    let body = json::Object::new()
        .number("preopens", preopens.len())
        .boolean("opened", opened)
        .finish();
    Response::json_raw(200, body)
}

fn probe_environment() -> Response {
    let body = json::Object::new()
        .number("env", wasi::cli::environment::get_environment().len())
        .number("args", wasi::cli::environment::get_arguments().len())
        .finish();
    Response::json_raw(200, body)
}

fn probe_sockets() -> Response {
    let network = wasi::sockets::instance_network::instance_network();
    let (tcp_socket, connect) = probe_tcp(&network);
    let lookup = match resolve_localhost(&network) {
        Ok(addresses) => format!("ok: {addresses} addresses"),
        Err(error) => failure(error),
    };
    let body = json::Object::new()
        .string("tcp_socket", &tcp_socket)
        .boolean("connected", connect == "ok")
        .string("connect", &connect)
        .string("lookup", &lookup)
        .finish();
    Response::json_raw(200, body)
}

/// Creates a TCP socket and, if that works, connects it to 127.0.0.1:5432;
/// returns the outcome of each.
fn probe_tcp(network: &Network) -> (String, String) {
    let socket = match wasi::sockets::tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4) {
        Ok(socket) => socket,
        Err(error) => return (failure(error), "not attempted".to_owned()),
    };
    let address = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port: 5432,
        address: (127, 0, 0, 1),
    });
    let connected = socket.start_connect(network, address).and_then(|()| {
        loop {
            match socket.finish_connect() {
                Err(NetworkError::WouldBlock) => socket.subscribe().block(),
                other => break other.map(drop),
            }
        }
    });
    ("ok".to_owned(), outcome(connected))
}

/// Resolves `localhost`, which needs no network, so that only the sandbox
/// decides the answer; returns how many addresses came back.
fn resolve_localhost(network: &Network) -> Result<usize, NetworkError> {
    let stream = wasi::sockets::ip_name_lookup::resolve_addresses(network, "localhost")?;
    let mut addresses = 0;
    loop {
        match stream.resolve_next_address() {
            Ok(Some(_)) => addresses += 1,
            Ok(None) => return Ok(addresses),
            Err(NetworkError::WouldBlock) => stream.subscribe().block(),
            Err(error) => return Err(error),
        }
    }
}

fn outcome(result: Result<(), NetworkError>) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => failure(error),
    }
}

fn failure(error: NetworkError) -> String {
    format!("error: {}", error.name())
}

fn probe_clocks() -> Response {
    let now = wasi::clocks::wall_clock::now();
    let random = wasi::random::random::get_random_bytes(16);
    let body = json::Object::new()
        .number("wall_clock_seconds", now.seconds)
        .number("monotonic_nanos", wasi::clocks::monotonic_clock::now())
        .number("random_bytes", random.len())
        .finish();
    Response::json_raw(200, body)
}

/// The names of the headers the host passed on, comma-separated.
fn header_names(request: &Request) -> Response {
    let names: Vec<&str> = request
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let body = json::Object::new()
        .string("names", &names.join(","))
        .finish();
    Response::json_raw(200, body)
}

/// Answers with the status and header the query asks for, unchecked: the
/// host must cope with statuses out of range and headers it forbids.
fn respond_as_told(request: &Request) -> Response {
    let status = number_param(request, "status", 200).unwrap_or(200);
    let mut response = Response::new(status as u16);
    if let (Some(name), Some(value)) = (request.query_param("name"), request.query_param("value")) {
        response.headers.push((name, value));
    }
    response
}

/// The query parameter `name` as a number, `default` when absent, `None`
/// when malformed.
fn number_param(request: &Request, name: &str, default: u64) -> Option<u64> {
    match request.query_param(name) {
        None => Some(default),
        Some(text) => text.parse().ok(),
    }
}
