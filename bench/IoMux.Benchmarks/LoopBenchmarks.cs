using BenchmarkDotNet.Attributes;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Benchmarks;

/// <summary>One loop iteration with a level-ready I/O source dispatched: must allocate nothing.</summary>
[MemoryDiagnoser]
public class LoopIteration
{
    private EventLoop _loop = null!;
    private int _r, _w, _calls;

    [GlobalSetup]
    public unsafe void Setup()
    {
        _loop = new EventLoop(new Poller(Fixtures.Backend("epoll")));
        LibC.CreateNonBlockingPipe(out _r, out _w);
        byte b = 1;
        LibC.write(_w, &b, 1);
        _loop.AddIo(_r, Interest.Readable, (_, _) => _calls++);
    }

    [Benchmark]
    public bool RunOnce() => _loop.RunOnce(TimeSpan.Zero);

    [GlobalCleanup]
    public void Cleanup()
    {
        _loop.Dispose();
        Fixtures.Close([_r, _w]);
    }
}

/// <summary>await source.NextAsync() in a long-running async method on the loop: one byte written, one
/// iteration, one await completed. Must allocate nothing per await.</summary>
[MemoryDiagnoser]
public class LoopAwait
{
    private EventLoop _loop = null!;
    private int _r, _w, _received;

    [GlobalSetup]
    public void Setup()
    {
        _loop = new EventLoop(new Poller(Fixtures.Backend("epoll")));
        LibC.CreateNonBlockingPipe(out _r, out _w);
        var source = _loop.AddIo(_r, Interest.Readable);
        _loop.Post(() => _ = Reader(source));
        _loop.RunOnce(TimeSpan.Zero);
    }

    private async Task Reader(IoSource source)
    {
        while (!source.IsDisposed)
        {
            await source.NextAsync();
            ReadByte(_r);
            _received++;
        }
    }

    private static unsafe void ReadByte(int fd) { byte b; LibC.read(fd, &b, 1); }

    [Benchmark]
    public unsafe int WriteAndAwait()
    {
        byte b = 1;
        LibC.write(_w, &b, 1);
        _loop.RunOnce(TimeSpan.FromSeconds(1));
        return _received;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _loop.Dispose();
        Fixtures.Close([_r, _w]);
    }
}

/// <summary>Add and cancel 1 000 timers: the loop's slim timers and TimerSources against
/// System.Threading.Timer doing the same (created far in the future, then disposed), per operation = one
/// add + cancel pair.</summary>
[MemoryDiagnoser]
public class TimerChurn
{
    private const int Count = 1_000;
    private EventLoop _loop = null!;
    private readonly TimerSource[] _timers = new TimerSource[Count];
    private readonly SlimTimer[] _slimTimers = new SlimTimer[Count];
    private readonly Timer[] _threadingTimers = new Timer[Count];
    private static readonly Action<TimerSource> Nothing = _ => { };
    private static readonly Action<SlimTimer> NothingSlim = _ => { };
    private static readonly TimerCallback NothingThreading = _ => { };

    /// <summary>True: the loop has run an iteration, as it has whenever a callback adds a timer (its now is the
    /// wait's cached reading). False: a loop that never ran, where a relative timer reads the live clock
    /// (<c>EventLoop.Now</c>'s start-up rule, sd_event_now's fallback): one clock_gettime per add.</summary>
    [Params(true, false)]
    public bool Running { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _loop = new EventLoop(new Poller(Fixtures.Backend("epoll")));
        if (Running)
            _loop.RunOnce(TimeSpan.Zero);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Count)]
    public void SystemThreadingTimer()
    {
        for (int i = 0; i < Count; i++)
            _threadingTimers[i] = new Timer(NothingThreading, null, TimeSpan.FromHours(1), Timeout.InfiniteTimeSpan);
        for (int i = 0; i < Count; i++)
            _threadingTimers[i].Dispose();
    }

    [Benchmark(OperationsPerInvoke = Count)]
    public void TaskDelayWithCancellation()
    {
        for (int i = 0; i < Count; i++)
        {
            _sources[i] = new CancellationTokenSource();
            _delays[i] = Task.Delay(TimeSpan.FromHours(1), _sources[i].Token);
        }
        for (int i = 0; i < Count; i++)
            _sources[i].Cancel();
    }

    private readonly CancellationTokenSource[] _sources = new CancellationTokenSource[Count];
    private readonly Task[] _delays = new Task[Count];

    [Benchmark(OperationsPerInvoke = Count)]
    public void LoopTimerSource()
    {
        for (int i = 0; i < Count; i++)
            _timers[i] = _loop.AddTimer(TimeSpan.FromHours(1), Nothing);
        for (int i = 0; i < Count; i++)
            _timers[i].Dispose();
    }

    [Benchmark(OperationsPerInvoke = Count)]
    public void LoopSlimTimer()
    {
        for (int i = 0; i < Count; i++)
            _slimTimers[i] = _loop.AddSlimTimer(TimeSpan.FromHours(1), NothingSlim);
        for (int i = 0; i < Count; i++)
            _slimTimers[i].Dispose();
    }

    [GlobalCleanup]
    public void Cleanup() => _loop.Dispose();
}

/// <summary>The dispatch of due timers: 1 000 repeating timers with a 1 ns period, all due at every iteration;
/// one operation = one timer found due, re-armed and its callback run (RunOnce with a zero timeout, divided
/// by 1 000).</summary>
[MemoryDiagnoser]
public class TimerDispatch
{
    private const int Count = 1_000;
    private EventLoop _slimLoop = null!, _sourceLoop = null!;
    private int _fired;

    [GlobalSetup]
    public void Setup()
    {
        _slimLoop = new EventLoop(new Poller(Fixtures.Backend("epoll")));
        _sourceLoop = new EventLoop(new Poller(Fixtures.Backend("epoll")));
        var period = TimeSpan.FromTicks(1);
        for (int i = 0; i < Count; i++)
        {
            _slimLoop.AddSlimTimer(TimeSpan.Zero, _ => _fired++, accuracy: TimeSpan.Zero, period: period);
            _sourceLoop.AddTimer(TimeSpan.Zero, _ => _fired++, accuracy: TimeSpan.Zero, period: period);
        }
        Thread.Sleep(1);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Count)]
    public bool DueTimerSources() => _sourceLoop.RunOnce(TimeSpan.Zero);

    [Benchmark(OperationsPerInvoke = Count)]
    public bool DueSlimTimers() => _slimLoop.RunOnce(TimeSpan.Zero);

    [GlobalCleanup]
    public void Cleanup()
    {
        _slimLoop.Dispose();
        _sourceLoop.Dispose();
    }
}

/// <summary>Cross-thread posts: another thread posts 100 000 actions while the loop runs them.</summary>
[MemoryDiagnoser]
public class CrossThreadPosts
{
    private const int Count = 100_000;
    private EventLoop _loop = null!;
    private int _ran;
    private Action _increment = null!;

    [GlobalSetup]
    public void Setup()
    {
        _loop = new EventLoop(new Poller(Fixtures.Backend("epoll")));
        _increment = () => _ran++;
    }

    [Benchmark(OperationsPerInvoke = Count)]
    public void PostFromAnotherThread()
    {
        _ran = 0;
        var producer = Task.Run(() =>
        {
            for (int i = 0; i < Count; i++)
                _loop.Post(_increment);
        });
        while (_ran < Count)
            _loop.RunOnce(TimeSpan.FromSeconds(1));
        producer.Wait();
    }

    [GlobalCleanup]
    public void Cleanup() => _loop.Dispose();
}

/// <summary>The dispatch order measured both ways (docs/LOOP.md, "Differences from sd-event", row 3): <c>Sources</c>
/// level-ready pipes, each callback counted; one operation dispatches every one of them once. IoMux's batch takes one
/// iteration (one epoll_wait) for all; sd-event's order (the loop's internal one-per-iteration mode) one iteration per
/// callback, the first waiting and the others going straight to their dispatch, as sd_event_run does while sources are
/// pending: one epoll_wait per round too, but an iteration's own work (prepare step, timeouts, bookkeeping) per callback.
/// Must allocate nothing either way.</summary>
[MemoryDiagnoser]
public class LoopDispatchOrder
{
    private EventLoop _loop = null!;
    private readonly List<int> _fds = [];
    private long _calls;

    [Params(1, 16, 64)]
    public int Sources { get; set; }

    [Params(false, true)]
    public bool OnePerIteration { get; set; }

    [GlobalSetup]
    public unsafe void Setup()
    {
        _loop = new EventLoop(new Poller(Fixtures.Backend("epoll"))) { DispatchOnePerIteration = OnePerIteration };
        for (int i = 0; i < Sources; i++)
        {
            LibC.CreateNonBlockingPipe(out int r, out int w);
            byte b = 1;
            LibC.write(w, &b, 1);
            _fds.Add(r);
            _fds.Add(w);
            _loop.AddIo(r, Interest.Readable, (_, _) => _calls++);
        }
    }

    [Benchmark]
    public long DispatchEach()
    {
        long target = _calls + Sources;
        while (_calls < target)
            _loop.RunOnce(TimeSpan.Zero);
        return _calls;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _loop.Dispose();
        Fixtures.Close([.. _fds]);
    }
}
