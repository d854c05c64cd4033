using System.Runtime.InteropServices;

namespace IoMux.Loop;

// What a program ported from sd-event reaches for first: exit on idle, prepare and destroy callbacks, the rate limit's
// expire callback and the SIGINT/SIGTERM exit helper.
public sealed partial class EventLoop
{
    private SignalSource? _sigint, _sigterm; // SignalExit's

    /// <summary>When true, the loop exits with code 0 as soon as no source is left that could wake it: nothing on or
    /// oneshot other than exit and post sources (sd_event_set_exit_on_idle). Checked before each wait, after the
    /// prepare callbacks; armed timers (slim ones included), watched children, signal sources and posted actions
    /// count, a source held back by its rate limit counts. The loop's own helpers (the SIGCHLD source behind child
    /// sources without pidfd, the <see cref="SignalExit"/> pair) do not: they only serve the others.</summary>
    public bool ExitOnIdle { get; set; }

    /// <summary>When true, SIGINT and SIGTERM make the loop exit with code 0 (sd_event_set_signal_exit): two
    /// <see cref="SignalSource"/>s at priority 0, which the loop owns; false removes them.</summary>
    /// <exception cref="ObjectDisposedException">The loop is disposed.</exception>
    public bool SignalExit
    {
        get => _sigint is not null;
        set
        {
            ThrowIfDisposed();
            if (value == SignalExit)
                return;
            if (value)
            {
                _sigint = AddSignalSource(PosixSignal.SIGINT, (s, _) => s.Loop.Exit(0), 0, SourceState.On, "signal exit SIGINT", loopHelper: true);
                _sigterm = AddSignalSource(PosixSignal.SIGTERM, (s, _) => s.Loop.Exit(0), 0, SourceState.On, "signal exit SIGTERM", loopHelper: true);
            }
            else
            {
                _sigint!.Dispose();
                _sigterm!.Dispose();
                _sigint = _sigterm = null;
            }
        }
    }

    /// <summary>Before the wait: the prepare callbacks of the sources that are on and not rate limited, in priority order.
    /// A callback may add, dispose or switch sources (its own included); the walk is over a copy.</summary>
    private void RunPrepareCallbacks()
    {
        if (_prepares.Count == 0)
            return;
        int count = Snapshot(_prepares);
        for (int i = 0; i < count; i++)
        {
            var source = _snapshot[i];
            _snapshot[i] = null!;
            if (source.IsDisposed || source.State == SourceState.Off || source.IsRateLimited || source.PrepareCallback is not { } prepare)
                continue;
            InvokeHook(source, prepare);
        }
    }

    /// <summary>A prepare or rate-limit expire callback; one that throws stops the loop as a source's callback does.</summary>
    private void InvokeHook(EventSource source, Action<EventSource> hook)
    {
        try
        {
            hook(source);
        }
        catch (Exception e) when (!source.ExitOnFailure)
        {
            source.DisableAfterFailure(e);
        }
        catch (Exception e)
        {
            Fail(source, null, e);
        }
    }

    /// <summary>Nothing left that could wake the loop (see <see cref="ExitOnIdle"/>).</summary>
    private bool IsIdle()
    {
        if (_timers.LiveCount > 0 || Volatile.Read(ref _posted) is { IsEmpty: false })
            return false;
        foreach (var source in _sources.Values)
            if (source.CanWakeLoop)
                return false;
        return true;
    }
}
