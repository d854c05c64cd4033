using System.Diagnostics;
using static IoMux.Conformance.ScenarioContext;

namespace IoMux.Conformance;

/// <summary>E1–E9: bad input gets the same typed error on every backend and loses nothing.</summary>
internal static class BadInputScenarios
{
    public static IEnumerable<Scenario> All =>
    [
        new("E1", "negative descriptor",
            "ArgumentOutOfRangeException from the poller and from the backend", c =>
            {
                var p = c.NewPoller();
                Throws<ArgumentOutOfRangeException>(() => p.Register(-1, 1, Interest.Readable), "poller");
                using var backend = c.Backend.Create();
                Throws<ArgumentOutOfRangeException>(() => backend.Add(-5, 1, Interest.Readable, TriggerMode.Level), "backend");
            }),
        new("E2", "closed descriptor",
            "PosixException named EBADF; nothing left registered", c =>
            {
                var p = c.NewPoller();
                var (r, _) = c.Pipe();
                c.Close(r);
                var e = Throws<PosixException>(() => p.Register(r, 1, Interest.Readable), "closed fd");
                Check(e.ErrorName == "EBADF", $"expected EBADF, got {e.ErrorName}");
                Check(e.Message.Contains("EBADF"), "the message must name the errno");
                Check(p.RegistrationCount == 0, "nothing may stay registered");
            }),
        new("E3", "modify or delete an unknown descriptor; use a disposed registration",
            "NotRegisteredException from the backend; ObjectDisposedException from the disposed registration; Dispose twice is a no-op", c =>
            {
                var (a, _) = c.UnixPair();
                using var backend = c.Backend.Create();
                Throws<NotRegisteredException>(() => backend.Modify(a, 1, Interest.Readable, TriggerMode.Level), "backend modify");
                Throws<NotRegisteredException>(() => backend.Delete(a), "backend delete");
                var p = c.NewPoller();
                var reg = p.Register(a, 1, Interest.Readable);
                reg.Dispose();
                reg.Dispose();
                Throws<ObjectDisposedException>(() => reg.Modify(Interest.Writable), "modify after dispose");
            }),
        new("E4", "dispose while another thread is blocked in an infinite wait",
            "the waiter returns 0 promptly, no crash; later waits throw ObjectDisposedException", c =>
            {
                var p = new Poller(c.Backend.Create());
                var (a, _) = c.UnixPair();
                p.Register(a, 1, Interest.Readable);
                var entered = new ManualResetEventSlim();
                var waiter = Task.Run(() => { entered.Set(); return p.Wait(new PollEvent[4]); });
                Check(entered.Wait(ThreadStarts), "the waiting thread did not start");
                Thread.Sleep(30);
                p.Dispose();
                Check(waiter.Wait(MustArrive), "the waiter did not return after dispose");
                Check(waiter.Result == 0, "the waiter returns 0 events");
                Throws<ObjectDisposedException>(() => p.Wait(new PollEvent[4], TimeSpan.Zero), "wait after dispose");
                Throws<ObjectDisposedException>(() => p.Register(a, 2, Interest.Readable), "register after dispose");
                p.Wake(); // a no-op: wakers may race with shutdown
            }),
        new("E5", "empty event span; negative timeout",
            "ArgumentException; ArgumentOutOfRangeException; InfiniteTimeSpan is accepted", c =>
            {
                var p = c.NewPoller();
                Throws<ArgumentException>(() => p.Wait(Span<PollEvent>.Empty, TimeSpan.Zero), "empty span");
                Throws<ArgumentOutOfRangeException>(() => p.Wait(new PollEvent[1], TimeSpan.FromMilliseconds(-5)), "negative timeout");
                p.Wake();
                Check(p.Wait(new PollEvent[1], Timeout.InfiniteTimeSpan) == 0, "an infinite wait ended by a wake returns 0");
            }),
        new("E6", "a second thread waits while one already does",
            "InvalidOperationException for the second; the first is unaffected", c =>
            {
                var p = c.NewPoller();
                // The first waiter must hold the poller before the second tries, whatever the scheduler does: it
                // retries while the second's probe (a zero wait) holds it, and says when it got in.
                var entered = new ManualResetEventSlim();
                var first = Task.Factory.StartNew(() =>
                {
                    var events = new PollEvent[4];
                    var clock = Stopwatch.StartNew();
                    while (true)
                    {
                        try
                        {
                            entered.Set();
                            return p.Wait(events, MustArrive);
                        }
                        catch (InvalidOperationException) when (clock.Elapsed < MustArrive)
                        {
                            Thread.Yield(); // the probe below was inside its zero wait: try again
                        }
                    }
                }, TaskCreationOptions.LongRunning);
                Check(entered.Wait(ThreadStarts), "the waiting thread did not start");
                var clock = Stopwatch.StartNew();
                bool refused = false;
                while (!refused && clock.Elapsed < MustArrive)
                {
                    try
                    {
                        p.Wait(new PollEvent[4], TimeSpan.Zero);
                        Thread.Sleep(1); // the first thread is not inside its wait yet
                    }
                    catch (InvalidOperationException)
                    {
                        refused = true;
                    }
                }
                Check(refused, "a concurrent wait was never refused");
                p.Wake();
                Check(first.Wait(MustArrive), "the first waiter did not return");
                Check(first.Result == 0, "the first waiter returns 0 for a wake");
            }),
        new("E7", "descriptor numbers up to and beyond the backend's limit",
            "up to MaxDescriptor works; above it DescriptorOutOfRangeException (select: FD_SETSIZE), never memory corruption", c =>
            {
                var p = c.NewPoller();
                var (r, w) = c.Pipe();
                int max = p.Capabilities.MaxDescriptor;
                int limit = (int)Math.Min(ResourceLimits.RaiseOpenFileLimit(), int.MaxValue);
                int high = max == int.MaxValue ? Math.Min(limit - 1, 4_000) : max;
                int above = max == int.MaxValue ? -1 : max + 1;
                if (high >= limit || (above >= 0 && above >= limit))
                    NotApplicable($"the open-file limit {limit} is below the descriptor numbers this scenario needs");
                // dup2 would silently close whatever already holds the number.
                if (Interop.LibC.fcntl(high, Interop.LibC.F_GETFD, 0) >= 0 || (above >= 0 && Interop.LibC.fcntl(above, Interop.LibC.F_GETFD, 0) >= 0))
                    NotApplicable($"descriptor {high} or {above} is already in use in this process");
                Check(Interop.LibC.dup2(r, high) == high, "dup2 to the highest accepted number");
                c.Track(high);
                p.Register(high, 1, Interest.Readable);
                Write(w, 1);
                Expect(p, 1, Readable, None, $"descriptor {high}");
                if (above >= 0)
                {
                    Check(Interop.LibC.dup2(r, above) == above, "dup2 above the limit");
                    c.Track(above);
                    Throws<DescriptorOutOfRangeException>(() => p.Register(above, 2, Interest.Readable), $"descriptor {above}");
                }
            }),
    ];

    private const Readiness Readable = Readiness.Readable;
    private const Readiness None = Readiness.None;
}
