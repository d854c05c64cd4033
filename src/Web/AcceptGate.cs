using IoMux.Loop;
using Microsoft.Extensions.Logging;
using IoMux.Interop;

namespace IoMux.Web;

/// <summary>The descriptors one server's connections hold, across its loops, checked against a
/// <see cref="Interop.DescriptorBudget"/>: a server accepts only while one more connection leaves the .NET runtime
/// its reserve below the soft RLIMIT_NOFILE (at the limit the runtime cannot start a thread and aborts the process:
/// docs/reliability/descriptor-limit.md).</summary>
internal sealed class ServerDescriptors(int perConnection)
{
    private readonly Interop.DescriptorBudget _budget = new();
    private int _connections;

    /// <summary>Descriptors one connection may hold (its socket, and a file being sent for the static server).</summary>
    public int PerConnection => perConnection;

    /// <summary>True while the server may accept one more connection, and open <paramref name="alsoOpening"/>
    /// descriptors of its own.</summary>
    public bool AllowsOneMore(int alsoOpening = 0) =>
        _budget.Allows((long)Volatile.Read(ref _connections) * perConnection, perConnection + alsoOpening);

    /// <summary>A connection was accepted (any loop).</summary>
    public void Opened() => Interlocked.Increment(ref _connections);

    /// <summary>A connection was closed (any loop).</summary>
    public void Closed() => Interlocked.Decrement(ref _connections);
}

/// <summary>What a loop's listener does when accepting one more connection would leave the runtime short of
/// descriptors, or when accept(2) fails. Out of descriptors (EMFILE, ENFILE, or the budget of
/// <see cref="ServerDescriptors"/> spent) or memory (ENOBUFS, ENOMEM) the pending connection keeps the listener
/// readable, so accepting again at once would spin: the listener leaves the poller for <see cref="PauseTime"/> at a
/// time, the shortage is logged once per episode, and <see cref="Interop.SpareDescriptors"/> are given back to keep
/// headroom for the runtime while the process is at its limit.</summary>
internal sealed class AcceptGate : IDisposable
{
    private readonly EventLoop _loop;
    private readonly IoSource _listener;
    private readonly ILogger _logger;
    private readonly ServerDescriptors _descriptors;
    private readonly Interop.SpareDescriptors _spares = new();

    public AcceptGate(EventLoop loop, IoSource listener, ILogger logger, ServerDescriptors descriptors)
    {
        _loop = loop;
        _listener = listener;
        _logger = logger;
        _descriptors = descriptors;
        _spares.Take();
    }

    /// <summary>How long accepting pauses after a shortage.</summary>
    public static readonly TimeSpan PauseTime = TimeSpan.FromMilliseconds(100);

    private TimerSource? _resume;
    private bool _logged;

    /// <summary>Asked before each accept: false (and accepting paused) when one more connection would eat into
    /// the runtime's reserve of descriptors; the clients wait in the listen backlog meanwhile.</summary>
    public bool Admits()
    {
        if (_descriptors.AllowsOneMore())
            return true;
        Pause(Errno.EMFILE);
        return false;
    }

    /// <summary>A connection was accepted: a shortage (if any) is over.</summary>
    public void Accepted()
    {
        _logged = false;
        _descriptors.Opened();
    }

    /// <summary>An accepted connection was closed.</summary>
    public void Released() => _descriptors.Closed();

    /// <summary>Handles accept's -errno; true when the caller may try the next accept at once.</summary>
    public bool Failed(int errno)
    {
        if (errno == Errno.EAGAIN)
            return false;
        if (errno == Errno.EINTR || errno == Errno.ECONNABORTED)
            return true;
        if (errno == Errno.EMFILE || errno == Errno.ENFILE || errno == Errno.ENOBUFS || errno == Errno.ENOMEM)
        {
            Pause(errno);
            return false;
        }
        _logger.LogError("accept: {Error} ({Description}).", Errno.Name(errno), Errno.Describe(errno));
        return false;
    }

    private void Pause(int errno)
    {
        if (!_logged)
            _logger.LogWarning("accept: {Error}; not accepting for {Milliseconds} ms at a time until a connection is accepted again.",
                Errno.Name(errno), (int)PauseTime.TotalMilliseconds);
        _logged = true;
        _spares.Give(); // free descriptors for the rest of the process while it is at its limit
        _listener.State = SourceState.Off;
        WebMetrics.AcceptPaused();
        ScheduleResume();
    }

    private void ScheduleResume()
    {
        _resume?.Dispose();
        _resume = _loop.AddTimer(PauseTime, _ =>
        {
            if (_listener.IsDisposed)
                return;
            // The spares count as the budget's: taking them back must not eat into the runtime's reserve either.
            if (!_descriptors.AllowsOneMore(alsoOpening: _spares.Missing) || !_spares.Take())
            {
                ScheduleResume(); // still at the limit: stay paused
                return;
            }
            _listener.State = SourceState.On;
        }, accuracy: TimeSpan.FromMilliseconds(10), description: "accept pause");
    }

    /// <summary>Gives the spare descriptor back and stops the pause timer.</summary>
    public void Dispose()
    {
        _resume?.Dispose();
        _spares.Dispose();
    }

    /// <summary>An accepted connection the poller cannot watch (select's FD_SETSIZE): it is closed at once (the
    /// client sees the connection end, not a hang), and the first of a run is logged.</summary>
    public void CannotWatch(int fd, DescriptorOutOfRangeException error)
    {
        Interop.LibC.CloseQuietly(fd);
        if (!_logged)
            _logger.LogWarning("Closed a connection the {Backend} backend cannot watch: {Message}", _loop.Poller.Capabilities.Name, error.Message);
        _logged = true;
    }

    /// <summary>True while accepting is paused.</summary>
    public bool Paused => _resume is { IsDisposed: false, State: not SourceState.Off };
}
