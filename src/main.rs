use std::process::ExitCode;

// `--features dhat-heap`: a heap profile by allocation site, written to dhat-heap.json on
// SIGUSR1 (the live heap at that moment and the peak so far) or at exit.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    heap_profile::start();
    let code = freshteam_operator::cli::main();
    #[cfg(feature = "dhat-heap")]
    heap_profile::write();
    code
}

#[cfg(feature = "dhat-heap")]
mod heap_profile {
    use std::sync::Mutex;

    static PROFILER: Mutex<Option<dhat::Profiler>> = Mutex::new(None);

    pub fn start() {
        *PROFILER.lock().unwrap() = Some(dhat::Profiler::new_heap());
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the signal");
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let mut usr1 = signal(SignalKind::user_defined1()).expect("a SIGUSR1 handler");
                usr1.recv().await;
                write();
            });
        });
    }

    /// Drops the profiler, which writes the file; later calls do nothing.
    pub fn write() {
        let profiler = PROFILER.lock().unwrap().take();
        drop(profiler);
    }
}
