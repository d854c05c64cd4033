using System.Collections.Concurrent;
using System.IO.Pipelines;
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
        Scheduler = new LoopScheduler(Loop);
        _thread = new Thread(() => Loop.Run()) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public EventLoop Loop { get; }

    /// <summary>Runs pipe continuations on this loop, batched at the end of an iteration.</summary>
    public LoopScheduler Scheduler { get; }

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

/// <summary>
/// A <see cref="PipeScheduler"/> that runs continuations on one loop, after the iteration's I/O: every flush an
/// iteration produced (all the responses of a pipelined batch, say) is then sent with one writev per connection,
/// as Kestrel's socket transport batches its sends through its I/O queues. From another thread it posts one drain
/// (coalesced: at most one outstanding), so thread-pool application code hands its output to the loop without an
/// allocation per flush.
/// </summary>
internal sealed class LoopScheduler : PipeScheduler
{
    private readonly EventLoop _loop;
    private readonly ConcurrentQueue<(Action<object?> Action, object? State)> _work = new();
    private readonly Action _drainPosted;
    private int _posted;

    public LoopScheduler(EventLoop loop)
    {
        _loop = loop;
        _drainPosted = DrainPosted;
        // A post source runs in every iteration that dispatched another source, after all of them (sd-event's post).
        loop.AddPost(_ => Drain(), description: "pipe continuations");
    }

    public override void Schedule(Action<object?> action, object? state)
    {
        _work.Enqueue((action, state));
        if (!_loop.IsLoopThread && Interlocked.Exchange(ref _posted, 1) == 0)
            _loop.Post(_drainPosted);
    }

    private void DrainPosted()
    {
        Volatile.Write(ref _posted, 0); // before draining: work enqueued from now on posts again or is drained here
        Drain();
    }

    private void Drain()
    {
        while (_work.TryDequeue(out var work))
            work.Action(work.State);
    }
}
