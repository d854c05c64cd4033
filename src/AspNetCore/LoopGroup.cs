using IoMux.Loop;

namespace IoMux.AspNetCore;

/// <summary>One event loop per thread; connections are spread over them by the loop that accepted them.</summary>
internal sealed class LoopGroup : IDisposable
{
    private readonly LoopThread[] _loops;

    public LoopGroup(IoMuxTransportOptions options)
    {
        _loops = new LoopThread[options.ThreadCount];
        try
        {
            for (int i = 0; i < _loops.Length; i++)
                _loops[i] = new LoopThread(options.CreatePoller(), $"iomux-kestrel-{i}");
        }
        catch
        {
            Dispose();
            throw;
        }
        BackendName = _loops[0].Loop.Poller.Capabilities.Name;
    }

    public int Count => _loops.Length;

    public string BackendName { get; }

    public LoopThread this[int index] => _loops[index];

    public void Dispose()
    {
        foreach (var loop in _loops)
            loop?.Dispose();
    }
}

/// <summary>An <see cref="EventLoop"/> running on its own thread until disposed.</summary>
internal sealed class LoopThread : IDisposable
{
    private readonly Thread _thread;

    public LoopThread(Poller poller, string name)
    {
        Loop = new EventLoop(poller);
        _thread = new Thread(() => Loop.Run()) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public EventLoop Loop { get; }

    /// <summary>Runs <paramref name="action"/> on the loop thread (at once when already there).</summary>
    public void Run(Action action)
    {
        if (Loop.IsLoopThread)
            action();
        else
            Loop.Post(action);
    }

    public void Dispose()
    {
        Loop.Exit();
        if (Thread.CurrentThread != _thread)
            _thread.Join();
        Loop.Dispose();
    }
}
