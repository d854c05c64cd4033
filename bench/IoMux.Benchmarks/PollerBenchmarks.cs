using BenchmarkDotNet.Attributes;

namespace IoMux.Benchmarks;

/// <summary>Wait + dispatch with N descriptors ready (level mode, so readiness persists and no re-arm call
/// pollutes the figure). MemoryDiagnoser must show no allocation per wait on any backend.</summary>
[MemoryDiagnoser]
public class WaitDispatch
{
    private Poller _poller = null!;
    private PollEvent[] _events = null!;
    private int[] _fds = [];

    /// <summary>backend/ready-count. select stops at 64: 1 024 descriptors do not fit below FD_SETSIZE
    /// next to the runtime's own.</summary>
    [Params("epoll/1", "epoll/64", "epoll/1024", "poll/1", "poll/64", "poll/1024", "select/1", "select/64")]
    public string Case { get; set; } = "epoll/1";

    [GlobalSetup]
    public void Setup()
    {
        var parts = Case.Split('/');
        int n = int.Parse(parts[1]);
        _fds = Enumerable.Range(0, n).Select(_ => Fixtures.ReadyEventFd()).ToArray();
        _poller = new Poller(Fixtures.Backend(parts[0]));
        for (int i = 0; i < n; i++)
            _poller.Register(_fds[i], (ulong)i, Interest.Readable);
        _events = new PollEvent[n];
    }

    [Benchmark]
    public ulong WaitAndDispatch()
    {
        int got = _poller.Wait(_events, TimeSpan.Zero);
        ulong sum = 0;
        for (int i = 0; i < got; i++)
            sum += _events[i].Token;
        return sum;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _poller.Dispose();
        Fixtures.Close(_fds);
    }
}

/// <summary>Register, modify and deregister one descriptor: the control path (epoll_ctl x3 on epoll; table
/// updates plus a set rebuild on the next wait for poll and select).</summary>
[MemoryDiagnoser]
public class RegisterModifyDeregister
{
    private Poller _poller = null!;
    private int _fd;

    [Params("epoll", "poll", "select")]
    public string Backend { get; set; } = "epoll";

    [GlobalSetup]
    public void Setup()
    {
        _poller = new Poller(Fixtures.Backend(Backend));
        _fd = Fixtures.ReadyEventFd();
    }

    [Benchmark]
    public void RegisterModifyDispose()
    {
        var registration = _poller.Register(_fd, 1, Interest.Readable);
        registration.Modify(Interest.Readable | Interest.Writable, TriggerMode.Edge);
        registration.Dispose();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _poller.Dispose();
        Fixtures.Close([_fd]);
    }
}

/// <summary>Cross-thread wake round trip: this thread wakes B's poller and blocks on its own; B, blocked in
/// its wait, returns and wakes ours. One operation = two wakes and two blocking waits.</summary>
[MemoryDiagnoser]
public class WakeRoundTrip
{
    private Poller _mine = null!, _theirs = null!;
    private readonly PollEvent[] _events = new PollEvent[4];
    private Thread _partner = null!;
    private volatile bool _stop;

    [Params("epoll", "poll", "select")]
    public string Backend { get; set; } = "epoll";

    [GlobalSetup]
    public void Setup()
    {
        _mine = new Poller(Fixtures.Backend(Backend));
        _theirs = new Poller(Fixtures.Backend(Backend));
        _partner = new Thread(() =>
        {
            var events = new PollEvent[4];
            while (!_stop)
            {
                _theirs.Wait(events);
                _mine.Wake();
            }
        }) { IsBackground = true };
        _partner.Start();
    }

    [Benchmark]
    public int PingPong()
    {
        _theirs.Wake();
        return _mine.Wait(_events);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _theirs.Wake();
        _partner.Join();
        _mine.Dispose();
        _theirs.Dispose();
    }
}

/// <summary>Re-arming, the third hot-path operation: a oneshot registration re-armed with Rearm(), or an
/// edge registration told about would-block (emulated edge on poll and select re-arms the direction; native
/// epoll needs no call), then one wait that reports it again. Must allocate nothing.</summary>
[MemoryDiagnoser]
public class Rearm
{
    private Poller _poller = null!;
    private Registration _registration = null!;
    private readonly PollEvent[] _events = new PollEvent[4];
    private int _fd;

    [Params("epoll/oneshot", "poll/oneshot", "select/oneshot", "poll/edge", "select/edge")]
    public string Case { get; set; } = "epoll/oneshot";

    [GlobalSetup]
    public void Setup()
    {
        var parts = Case.Split('/');
        _poller = new Poller(Fixtures.Backend(parts[0]));
        _fd = Fixtures.ReadyEventFd();
        _registration = _poller.Register(_fd, 1, Interest.Readable, parts[1] == "edge" ? TriggerMode.Edge : TriggerMode.Oneshot);
    }

    [Benchmark]
    public int RearmAndWait()
    {
        if (_registration.Mode == TriggerMode.Oneshot)
            _registration.Rearm();
        else
            _registration.NotifyWouldBlock(Interest.Readable);
        return _poller.Wait(_events, TimeSpan.Zero);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _poller.Dispose();
        Fixtures.Close([_fd]);
    }
}
