namespace IoMux.Loop;

/// <summary>Pings a service manager's watchdog (<c>WATCHDOG=1</c>, systemd's <c>WatchdogSec=</c>) from event loops
/// themselves, as sd-event's sd_event_set_watchdog does: a timer on each attached loop checks in every half
/// timeout, and the ping goes out only when every attached loop has checked in since the previous one. A loop stuck
/// in a callback (or a stopped process) therefore stops the pings and the manager acts on its timeout; a thread
/// that pinged on its own would keep a dead server "alive".</summary>
/// <remarks>The timers fire between one half and three quarters of the timeout after the previous round, which is
/// sd-event's window (arm_watchdog in src/libsystemd/sd-event/sd-event.c sleeps between watchdog_last + period/2 and
/// watchdog_last + period*3/4). One watchdog serves a server of several loops (one per thread): each loop is a
/// member, and the member that completes a round sends the ping. Nothing is allocated per round.</remarks>
public sealed class LoopWatchdog
{
    private readonly object _lock = new();
    private readonly List<Member> _members = [];
    private readonly TimeSpan _checkInPeriod;
    private long _round, _pings; // a round ends with a ping, once every member has checked in during it

    /// <summary>A watchdog pinging <paramref name="notifier"/> so that a ping arrives well within
    /// <paramref name="timeout"/> (systemd's <c>WATCHDOG_USEC</c>).</summary>
    public LoopWatchdog(SdNotifier notifier, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(notifier);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        Notifier = notifier;
        Timeout = timeout;
        _checkInPeriod = timeout / 2;
    }

    /// <summary>The watchdog systemd asked this process for (<see cref="SdNotifier.WatchdogTimeout()"/>), or null
    /// when there is no notifier or no watchdog for this process.</summary>
    /// <exception cref="FormatException">WATCHDOG_USEC or WATCHDOG_PID is malformed.</exception>
    public static LoopWatchdog? FromEnvironment(SdNotifier? notifier) =>
        notifier is not null && SdNotifier.WatchdogTimeout() is { } timeout ? new LoopWatchdog(notifier, timeout) : null;

    /// <summary>sd_event_set_watchdog for <paramref name="loop"/>: attaches it to the watchdog systemd asked this
    /// process for (see <see cref="FromEnvironment"/>); null, and nothing attached, when there is none.</summary>
    /// <exception cref="FormatException">WATCHDOG_USEC or WATCHDOG_PID is malformed.</exception>
    internal static LoopWatchdog? Enable(EventLoop loop, SdNotifier? notifier)
    {
        var watchdog = FromEnvironment(notifier);
        if (watchdog is null)
            return null;
        watchdog.Attach(loop);
        // sd_event_set_watchdog pings at once: the manager hears from the service as soon as it has a watchdog, not half
        // a timeout later (a start that took most of the timeout would otherwise be killed before the first ping).
        if (watchdog.Notifier.Ping())
            Interlocked.Increment(ref watchdog._pings);
        return watchdog;
    }

    /// <summary>Where the pings go.</summary>
    public SdNotifier Notifier { get; }

    /// <summary>The manager's timeout; pings come every half of it while every member loop runs.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>Pings sent so far.</summary>
    public long Pings => Interlocked.Read(ref _pings);

    /// <summary>Makes <paramref name="loop"/> a member: from now on no ping goes out unless it, too, keeps iterating.
    /// Call it on the loop's thread, or before the loop runs. Disposing the result (on the loop's thread) leaves.</summary>
    public IDisposable Attach(EventLoop loop)
    {
        ArgumentNullException.ThrowIfNull(loop);
        var member = new Member(this);
        lock (_lock)
            _members.Add(member);
        member.Timer = loop.AddTimer(_checkInPeriod, _ => CheckIn(member),
            accuracy: _checkInPeriod / 2, period: _checkInPeriod, description: "watchdog");
        return member;
    }

    /// <summary><see cref="Attach"/> on the loop's own thread, in its next iteration: for a loop that already
    /// runs on another thread. Any thread may call it.</summary>
    public void AttachLater(EventLoop loop)
    {
        ArgumentNullException.ThrowIfNull(loop);
        loop.Post(() => Attach(loop));
    }

    private void CheckIn(Member member)
    {
        lock (_lock)
        {
            member.Round = _round;
            foreach (var other in _members)
                if (other.Round != _round)
                    return; // a member has not run since the last ping: it may be stuck, so no ping
            _round++;
        }
        if (Notifier.Ping())
            Interlocked.Increment(ref _pings);
    }

    private void Leave(Member member)
    {
        lock (_lock)
            _members.Remove(member);
    }

    private sealed class Member(LoopWatchdog watchdog) : IDisposable
    {
        public long Round = -1;
        public TimerSource? Timer;

        public void Dispose()
        {
            watchdog.Leave(this);
            Timer?.Dispose();
        }
    }
}
