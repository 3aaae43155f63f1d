//! A loopback HTTP/1.1 server that answers every request after a fixed delay, for
//! `benches/batch.sh`: the batch benchmark measures pflow's overhead over the ideal
//! time, so its server must not be the limit itself. One thread and an event loop
//! (tokio's), as the asyncio server in the same benchmark, but compiled: no interpreter
//! between a response's timer and its write, and no thread per connection to start
//! and tear down on a 2-core machine. Keep-alive honoured, each response in one write
//! with `TCP_NODELAY`.
//!
//!     cargo run --release --example slow_server -- [DELAY_MS]   (default 100)
//!
//! Prints the port it listens on, then serves until killed.

use std::io::Write;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let delay_ms = match std::env::args().nth(1) {
        Some(s) => s.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "DELAY_MS: a number")
        })?,
        None => 100,
    };
    let delay = Duration::from_millis(delay_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                // A connection that breaks simply ends; the client reports it.
                let _ = serve(stream, delay).await;
            });
        }
    })
}

/// Answer the requests of one connection in order, until either side closes it.
async fn serve(stream: TcpStream, delay: Duration) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let (Some(_method), Some(path), Some(version)) = (words.next(), words.next(), words.next())
        else {
            return Ok(());
        };
        let path = path.to_string();
        let mut keep = version == "HTTP/1.1";
        let mut length = 0u64;
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            let (name, value) = (
                name.trim().to_ascii_lowercase(),
                value.trim().to_ascii_lowercase(),
            );
            match name.as_str() {
                "connection" => keep = value == "keep-alive" || (keep && value != "close"),
                "content-length" => length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        tokio::io::copy(&mut (&mut stream).take(length), &mut tokio::io::sink()).await?;
        tokio::time::sleep(delay).await;
        let body = format!(r#"{{"ok": true, "path": "{path}"}}"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: {}\r\n\r\n{body}",
            body.len(),
            if keep { "keep-alive" } else { "close" },
        );
        stream.get_mut().write_all(response.as_bytes()).await?;
        if !keep {
            return Ok(());
        }
    }
}
