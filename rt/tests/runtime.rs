//! The runtime on real sockets: tasks and join handles, sleeps and timeouts, TCP both ways,
//! cancellation of a receive (its buffer handed back), operations dropped in flight, and a
//! runtime dropped with tasks still waiting.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use coregate_rt::net::is_cancelled;
use coregate_rt::time::{sleep, timeout, Elapsed};
use coregate_rt::{spawn, DriverKind, Runtime, TcpListener, TcpStream};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};

/// Runs `test` on an io_uring runtime, then on an epoll one.
fn on_both(test: impl Fn(&mut Runtime)) {
    let mut uring = Runtime::new(64).unwrap();
    assert_eq!(
        uring.driver(),
        DriverKind::UringTuned,
        "this kernel has io_uring"
    );
    test(&mut uring);
    let mut epoll = Runtime::epoll().unwrap();
    assert_eq!(epoll.driver(), DriverKind::Epoll);
    test(&mut epoll);
}

fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[test]
fn spawned_tasks_run_and_join() {
    on_both(|rt| {
        let out = rt.block_on(async {
            let ran = Rc::new(Cell::new(0));
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let ran = ran.clone();
                    spawn(async move {
                        sleep(Duration::from_millis(1)).await;
                        ran.set(ran.get() + 1);
                        i * 2
                    })
                })
                .collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await;
            }
            (sum, ran.get())
        });
        assert_eq!(out, (90, 10));
    });
}

#[test]
fn a_detached_task_runs_to_its_end() {
    on_both(|rt| {
        let done = Rc::new(Cell::new(false));
        let flag = done.clone();
        rt.block_on(async move {
            drop(spawn(async move {
                sleep(Duration::from_millis(5)).await;
                flag.set(true);
            }));
            sleep(Duration::from_millis(30)).await;
        });
        assert!(done.get());
    });
}

#[test]
fn sleeps_last_their_duration_and_timeouts_fire() {
    on_both(|rt| {
        rt.block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));

            let late = timeout(Duration::from_millis(10), sleep(Duration::from_secs(5))).await;
            assert_eq!(late, Err(Elapsed));
            assert!(start.elapsed() < Duration::from_secs(5));

            let early = timeout(Duration::from_secs(5), async { 7 }).await;
            assert_eq!(early, Ok(7));
        });
    });
}

#[test]
fn tcp_round_trip_both_ways_and_split() {
    on_both(|rt| {
        rt.block_on(async {
            let (listener, addr) = listener();
            let server = spawn(async move {
                let (stream, peer) = listener.accept().await.unwrap();
                assert!(peer.ip().is_loopback());
                let (mut rx, mut tx) = stream.into_split();
                // Echo until the client shuts down its side.
                let mut buf = Vec::with_capacity(4096);
                loop {
                    let (n, b) = rx.read(buf).await;
                    if n.unwrap() == 0 {
                        break;
                    }
                    let (w, b) = tx.write_all(b).await;
                    w.unwrap();
                    buf = b;
                }
            });
            let mut client = TcpStream::connect_addr(addr).await.unwrap();
            client.set_nodelay(true).unwrap();
            assert_eq!(client.peer_addr().unwrap(), addr);
            let mut got = Vec::new();
            for chunk in [&b"hello"[..], &[7u8; 100_000][..]] {
                let (w, _) = client.write_all(chunk.to_vec()).await;
                w.unwrap();
                while got.len() < chunk.len() {
                    let (n, b) = client.read(Vec::with_capacity(65536)).await;
                    assert!(n.unwrap() > 0);
                    got.extend_from_slice(&b);
                }
                assert_eq!(got, chunk);
                got.clear();
            }
            let (w, _) = client
                .writev(monoio::buf::VecBuf::from(vec![
                    b"ab".to_vec(),
                    b"cd".to_vec(),
                ]))
                .await;
            assert_eq!(w.unwrap(), 4);
            let (n, b) = client.read(Vec::with_capacity(16)).await;
            assert_eq!(&b[..n.unwrap()], b"abcd");
            client.shutdown().await.unwrap();
            server.await;
        });
    });
}

#[test]
fn a_cancelled_receive_hands_its_buffer_back() {
    on_both(|rt| {
        rt.block_on(async {
            let (listener, addr) = listener();
            let peer = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                let mut b = [0u8; 1];
                // Waits for the gateway side to close.
                let _ = s.read(&mut b);
            });
            let (stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::with_capacity(1024);
            buf.extend_from_slice(b"old");
            let recv = stream.recv(buf);
            let mut recv = std::pin::pin!(recv);
            let raced = timeout(Duration::from_millis(20), &mut recv).await;
            assert!(raced.is_err(), "nothing was sent");
            recv.cancel();
            let (result, buf) = recv.await;
            assert!(is_cancelled(&result.unwrap_err()));
            assert_eq!(buf.capacity(), 1024);
            drop(stream);
            peer.join().unwrap();
        });
    });
}

#[test]
fn readiness_then_read_and_a_refused_connect() {
    on_both(|rt| {
        rt.block_on(async {
            let (listener, addr) = listener();
            let peer = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                s.write_all(b"ping").unwrap();
                let mut b = [0u8; 1];
                let _ = s.read(&mut b);
            });
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.readable().await.unwrap();
            let (n, b) = stream.read(Vec::with_capacity(8)).await;
            assert_eq!(&b[..n.unwrap()], b"ping");
            drop(stream);
            peer.join().unwrap();

            // A port nothing listens on: bind one, learn it, close it.
            let closed = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let refused = TcpStream::connect_addr(closed).await;
            assert_eq!(
                refused.err().map(|e| e.kind()),
                Some(std::io::ErrorKind::ConnectionRefused)
            );
        });
    });
}

#[test]
fn operations_dropped_in_flight_complete_later_without_their_futures() {
    on_both(|rt| {
        rt.block_on(async {
            let (listener, addr) = listener();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (mut stream, _) = listener.accept().await.unwrap();
            // Many receives started and dropped: each leaves its buffer to the ring until the
            // cancellation completes.
            for _ in 0..1000 {
                let recv = stream.recv(Vec::with_capacity(64));
                drop(timeout(Duration::from_millis(0), recv).await);
            }
            // The socket still works: the next receive gets what is sent now.
            peer.write_all(b"after").unwrap();
            let (n, b) = stream.read(Vec::with_capacity(16)).await;
            assert_eq!(&b[..n.unwrap()], b"after");
        });
    });
}

#[test]
fn a_runtime_dropped_with_tasks_waiting_drops_them() {
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    for make in [|| Runtime::new(64), Runtime::epoll] {
        let dropped = Rc::new(Cell::new(false));
        let (listener, addr) = listener();
        let _peer = std::net::TcpStream::connect(addr).unwrap();
        {
            let mut rt = make().unwrap();
            let flag = Flag(dropped.clone());
            rt.block_on(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                drop(spawn(async move {
                    let _flag = flag;
                    let _ = stream.read(Vec::with_capacity(64)).await;
                }));
                sleep(Duration::from_millis(5)).await;
            });
            assert!(!dropped.get(), "the task is still waiting for its read");
        }
        assert!(dropped.get());
    }
}

#[test]
fn more_operations_in_one_round_than_the_ring_has_entries() {
    // 8 submission entries (16 completion entries) and 300 sleeps queued by one round of
    // tasks, 300 more when they end: the queue fills over and over, and completions pile
    // up past the completion ring while submissions continue.
    let mut rt = Runtime::new(8).unwrap();
    let done = rt.block_on(async {
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                spawn(async move {
                    sleep(Duration::from_millis(5)).await;
                    sleep(Duration::from_millis(1)).await;
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await;
        }
        sum
    });
    assert_eq!(done, (0..300).sum::<i32>());
}
