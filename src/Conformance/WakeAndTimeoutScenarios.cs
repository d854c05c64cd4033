using System.Diagnostics;
using System.Runtime.InteropServices;
using static IoMux.Conformance.ScenarioContext;

namespace IoMux.Conformance;

/// <summary>W1–W2 and T1–T3: wakes and timeouts.</summary>
internal static class WakeAndTimeoutScenarios
{
    public static IEnumerable<Scenario> All =>
    [
        new("W1", "wake before wait",
            "the next wait returns promptly with no events; the wake is then consumed (the wait after it runs its full timeout)", c =>
            {
                var p = c.NewPoller();
                p.Wake();
                p.Wake();
                var clock = Stopwatch.StartNew();
                Check(WaitOnce(p, MustArrive).Length == 0, "a wake is not an event");
                Check(clock.Elapsed < MustArrive, "the wait after a wake must return promptly");
                clock.Restart();
                WaitOnce(p, Quiet);
                Check(clock.Elapsed >= Quiet, $"two coalesced wakes must release one wait only; the second returned after {clock.Elapsed.TotalMilliseconds:F1} ms");
            }),
        new("W2", "1 000 wakes from another thread while one thread is blocked",
            "the waiter returns promptly; at most one write to the wake channel", c =>
            {
                var p = c.NewPoller();
                var entered = new ManualResetEventSlim();
                var waiter = Task.Run(() => { entered.Set(); return WaitOnce(p, MustArrive + MustArrive); });
                Check(entered.Wait(ThreadStarts), "the waiting thread did not start");
                Thread.Sleep(30);
                long before = p.Counters.WakeWrites;
                for (int i = 0; i < 1_000; i++)
                    p.Wake();
                Check(waiter.Wait(MustArrive), "the blocked waiter did not return after the wakes");
                long writes = p.Counters.WakeWrites - before;
                Check(writes <= 1, $"1 000 coalesced wakes cost {writes} writes to the wake channel");
            }),
        new("T1", "100 µs timeout with nothing ready",
            "never returns early; not rounded down to zero (no spinning: at most 2 kernel waits)", c =>
            {
                var p = c.NewPoller();
                var timeout = TimeSpan.FromTicks(1_000); // 100 µs
                for (int i = 0; i < 5; i++)
                {
                    long waits = p.Counters.KernelWaits;
                    var clock = Stopwatch.StartNew();
                    WaitOnce(p, timeout);
                    var elapsed = clock.Elapsed;
                    Check(elapsed >= timeout, $"returned after {elapsed.TotalMicroseconds:F0} µs, before the 100 µs timeout");
                    long used = p.Counters.KernelWaits - waits;
                    Check(used <= 2, $"a 100 µs wait took {used} kernel waits: the timeout was rounded down");
                }
            }),
        new("T2", "a timeout of ten years, ended by a wake",
            "accepted (clamped and looped, never overflowed); the wake ends it", c =>
            {
                var p = c.NewPoller();
                var waiter = Task.Run(() => WaitOnce(p, TimeSpan.FromDays(3650)));
                Thread.Sleep(30);
                p.Wake();
                Check(waiter.Wait(MustArrive), "the wake did not end a very long wait");
                Check(waiter.Result.Length == 0, "no events expected");
            }),
        new("T3", "signals interrupt the kernel wait (EINTR)",
            "the wait resumes with the time left: it returns no earlier than its 300 ms timeout, and the interruptions were counted", Interrupted),
    ];

    private static void Interrupted(ScenarioContext c)
    {
        var p = c.NewPoller();
        // A handler must exist, or the ignored SIGWINCH would never interrupt the system call.
        using var handler = PosixSignalRegistration.Create(PosixSignal.SIGWINCH, context => context.Cancel = true);
        nuint thread = 0;
        var ready = new ManualResetEventSlim();
        var timeout = TimeSpan.FromMilliseconds(300);
        var waiter = Task.Factory.StartNew(() =>
        {
            thread = SignalInterop.pthread_self();
            ready.Set();
            var clock = Stopwatch.StartNew();
            WaitOnce(p, timeout);
            return clock.Elapsed;
        }, TaskCreationOptions.LongRunning);
        Check(ready.Wait(ThreadStarts), "the waiting thread did not start");
        long before = p.Counters.Interruptions;
        for (int i = 0; i < 4; i++)
        {
            Thread.Sleep(50);
            SignalInterop.pthread_kill(thread, SignalInterop.SIGWINCH);
        }
        Check(waiter.Wait(MustArrive), "the interrupted wait never returned");
        Check(waiter.Result >= timeout, $"an interrupted wait returned after {waiter.Result.TotalMilliseconds:F1} ms, before its 300 ms timeout");
        Check(p.Counters.Interruptions - before >= 1, "no EINTR was seen: the signals did not reach the kernel wait");
    }
}
