using System.Diagnostics;
using IoMux.Interop;

namespace IoMux.Benchmarks;

/// <summary>
/// The two shapes that bench/run.sh times next to their C references (bench/c), with the same clock and the
/// same loop structure, so the ratio per dispatched event compares like with like.
/// </summary>
internal static unsafe class Shapes
{
    /// <summary>dispatch BACKEND N ITERATIONS: N readable eventfds, level; one Wait(timeout 0) plus a loop over
    /// the events per iteration. Prints: dispatch BACKEND N ITERATIONS ns_per_wait ns_per_event allocated_bytes</summary>
    public static int Dispatch(string[] args)
    {
        string backend = args[0];
        int n = int.Parse(args[1]);
        long iterations = long.Parse(args[2]);
        var fds = Enumerable.Range(0, n).Select(_ => Fixtures.ReadyEventFd()).ToArray();
        using var poller = new Poller(Fixtures.Backend(backend));
        for (int i = 0; i < n; i++)
            poller.Register(fds[i], (ulong)i, Interest.Readable);
        var events = new PollEvent[n];
        ulong sum = 0;
        // Warm up by time, not count: tiered JIT promotes hot methods to optimised code after ~100 ms of
        // calls; the timed loop must measure that code, as a long-running server would run it.
        long warmUntil = Stopwatch.GetTimestamp() + Stopwatch.Frequency;
        while (Stopwatch.GetTimestamp() < warmUntil)
            sum += Once(poller, events, out _);
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        long seen = 0;
        long start = Stopwatch.GetTimestamp();
        for (long it = 0; it < iterations; it++)
        {
            sum += Once(poller, events, out int got);
            seen += got;
        }
        double elapsedNs = Stopwatch.GetElapsedTime(start).Ticks * 100.0;
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        if (seen != n * iterations)
            throw new InvalidOperationException($"expected {n * iterations} events, saw {seen}");
        Console.WriteLine($"dispatch {backend} {n} {iterations} {elapsedNs / iterations:F1} {elapsedNs / seen:F2} {allocated} {sum & 1}");
        Fixtures.Close(fds);
        return 0;
    }

    private static ulong Once(Poller poller, PollEvent[] events, out int got)
    {
        got = poller.Wait(events, TimeSpan.Zero);
        ulong sum = 0;
        for (int i = 0; i < got; i++)
            sum += events[i].Token + (ulong)events[i].Readiness;
        return sum;
    }

    /// <summary>chain BACKEND N ACTIVE WRITES RUNS: libevent's bench.c shape (see bench/c/chain.c).
    /// Prints per run: chain BACKEND N ACTIVE WRITES microseconds ns_per_event</summary>
    public static int Chain(string[] args)
    {
        string backend = args[0];
        int n = int.Parse(args[1]), active = int.Parse(args[2]), writes = int.Parse(args[3]), runs = int.Parse(args[4]);
        Conformance.ResourceLimits.RaiseOpenFileLimit();
        var pairs = new (int Read, int Write)[n];
        for (int i = 0; i < n; i++)
            pairs[i] = Fixtures.SocketPair();
        using var poller = new Poller(Fixtures.Backend(backend));
        for (int i = 0; i < n; i++)
            poller.Register(pairs[i].Read, (ulong)i, Interest.Readable);
        var events = new PollEvent[1024];
        byte b = (byte)'e';
        for (int run = -3; run < runs; run++) // three untimed runs warm the JIT
        {
            int space = Math.Max(1, n / active);
            for (int a = 0; a < active; a++)
                LibC.write(pairs[a * space % n].Write, &b, 1);
            int written = 0, fired = 0, target = writes + active;
            long start = Stopwatch.GetTimestamp();
            while (fired < target)
            {
                int got = poller.Wait(events);
                for (int e = 0; e < got; e++)
                {
                    int i = (int)events[e].Token;
                    if (LibC.read(pairs[i].Read, &b, 1) != 1)
                        continue;
                    fired++;
                    if (written < writes)
                    {
                        LibC.write(pairs[(i + 1) % n].Write, &b, 1);
                        written++;
                    }
                }
            }
            double elapsedNs = Stopwatch.GetElapsedTime(start).Ticks * 100.0;
            if (run < 0)
                continue;
            Console.WriteLine($"chain {backend} {n} {active} {writes} {elapsedNs / 1000:F1} {elapsedNs / target:F1}");
        }
        foreach (var (r, w) in pairs)
        {
            LibC.close(r);
            LibC.close(w);
        }
        return 0;
    }
}
