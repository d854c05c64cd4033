using IoMux.Loop;
using Microsoft.Extensions.Logging;

namespace IoMux.Web;

/// <summary>What a loop's listener does when accept(2) fails. Out of descriptors (EMFILE, ENFILE) or memory
/// (ENOBUFS, ENOMEM) the pending connection keeps the listener readable, so accepting again at once would spin:
/// the listener leaves the poller for <see cref="PauseTime"/> and the shortage is logged once per episode.</summary>
internal sealed class AcceptGate(EventLoop loop, IoSource listener, ILogger logger)
{
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
                logger.LogWarning("accept: {Error}; not accepting for {Milliseconds} ms at a time until a connection is accepted again.",
                    Errno.Name(errno), (int)PauseTime.TotalMilliseconds);
            _logged = true;
            listener.State = SourceState.Off;
            _resume?.Dispose();
            _resume = loop.AddTimer(PauseTime, _ =>
            {
                if (!listener.IsDisposed)
                    listener.State = SourceState.On;
            }, accuracy: TimeSpan.FromMilliseconds(10), description: "accept pause");
            return false;
        }
        logger.LogError("accept: {Error} ({Description}).", Errno.Name(errno), Errno.Describe(errno));
        return false;
    }

    /// <summary>An accepted connection the poller cannot watch (select's FD_SETSIZE): it is closed at once (the
    /// client sees the connection end, not a hang), and the first of a run is logged.</summary>
    public void CannotWatch(int fd, DescriptorOutOfRangeException error)
    {
        Interop.LibC.CloseQuietly(fd);
        if (!_logged)
            logger.LogWarning("Closed a connection the {Backend} backend cannot watch: {Message}", loop.Poller.Capabilities.Name, error.Message);
        _logged = true;
    }

    /// <summary>True while accepting is paused.</summary>
    public bool Paused => _resume is { IsDisposed: false, State: not SourceState.Off };
}
