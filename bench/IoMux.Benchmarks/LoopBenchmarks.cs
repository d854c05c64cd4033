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

/// <summary>Add and cancel 1 000 timers: the loop's heaps against System.Threading.Timer doing the same
/// (created far in the future, then disposed), per operation = 1 000 add + cancel pairs.</summary>
[MemoryDiagnoser]
public class TimerChurn
{
    private const int Count = 1_000;
    private EventLoop _loop = null!;
    private readonly TimerSource[] _timers = new TimerSource[Count];
    private readonly Timer[] _threadingTimers = new Timer[Count];
    private static readonly Action<TimerSource> Nothing = _ => { };
    private static readonly TimerCallback NothingThreading = _ => { };

    [GlobalSetup]
    public void Setup() => _loop = new EventLoop(new Poller(Fixtures.Backend("epoll")));

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
    public void LoopTimer()
    {
        for (int i = 0; i < Count; i++)
            _timers[i] = _loop.AddTimer(TimeSpan.FromHours(1), Nothing);
        for (int i = 0; i < Count; i++)
            _timers[i].Dispose();
    }

    [GlobalCleanup]
    public void Cleanup() => _loop.Dispose();
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
