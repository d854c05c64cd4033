using IoMux.Loop;
using Microsoft.Extensions.Logging;

namespace IoMux.Web;

/// <summary>What a loop's listener does when accept(2) fails. Out of descriptors (EMFILE, ENFILE) or memory
/// (ENOBUFS, ENOMEM) the pending connection keeps the listener readable, so accepting again at once would spin:
/// the listener leaves the poller for <see cref="PauseTime"/> and the shortage is logged once per episode.
/// <see cref="Interop.SpareDescriptors"/> keep headroom for the runtime while the process is at its limit.</summary>
internal sealed class AcceptGate : IDisposable
{
    private readonly EventLoop _loop;
    private readonly IoSource _listener;
    private readonly ILogger _logger;
    private readonly Interop.SpareDescriptors _spares = new();

    public AcceptGate(EventLoop loop, IoSource listener, ILogger logger)
    {
        _loop = loop;
        _listener = listener;
        _logger = logger;
        _spares.Take();
    }

    /// <summary>How long accepting pauses after a shortage.</summary>
    public static readonly TimeSpan PauseTime = TimeSpan.FromMilliseconds(100);

    private TimerSource? _resume;
    private bool _logged;

    /// <summary>A connection was accepted: a shortage (if any) is over.</summary>
    public void Accepted() => _logged = false;

    /// <summary>Handles accept's -errno; true when the caller may try the next accept at once.</summary>
    public bool Failed(int errno)
    {
        if (errno == Errno.EAGAIN)
            return false;
        if (errno == Errno.EINTR || errno == Errno.ECONNABORTED)
            return true;
        if (errno == Errno.EMFILE || errno == Errno.ENFILE || errno == Errno.ENOBUFS || errno == Errno.ENOMEM)
        {
            if (!_logged)
                _logger.LogWarning("accept: {Error}; not accepting for {Milliseconds} ms at a time until a connection is accepted again.",
                    Errno.Name(errno), (int)PauseTime.TotalMilliseconds);
            _logged = true;
            _spares.Give(); // free descriptors for the rest of the process while it is at its limit
            _listener.State = SourceState.Off;
            WebMetrics.AcceptPaused();
            ScheduleResume();
            return false;
        }
        _logger.LogError("accept: {Error} ({Description}).", Errno.Name(errno), Errno.Describe(errno));
        return false;
    }

    private void ScheduleResume()
    {
        _resume?.Dispose();
        _resume = _loop.AddTimer(PauseTime, _ =>
        {
            if (_listener.IsDisposed)
                return;
            if (!_spares.Take())
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
