using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Loop;

/// <summary>
/// Where the loop reads its clocks and gets a kernel timer that expires at an absolute point on a clock. The
/// poller's wait takes a relative timeout, which the kernel counts on the monotonic clock: right for monotonic
/// deadlines, wrong for the others. A realtime deadline is a point in calendar time (a wall-clock jump moves it
/// nearer or further) and a boottime deadline counts suspend, which the monotonic clock does not. So, as
/// sd-event does (sd-event.c: <c>event_setup_timer_fd</c> makes one timerfd per clock, <c>event_arm_timer</c>
/// sets it with <c>TFD_TIMER_ABSTIME</c>), the loop arms one absolute kernel timer per such clock, watched by the
/// poller like any descriptor. A seam so that tests can set a clock forward, which on a shared machine (and with
/// time namespaces, which leave CLOCK_REALTIME alone) they cannot do to the real one.
/// </summary>
internal abstract class LoopClocks
{
    /// <summary>The clocks of the system: <see cref="TimerSource.ReadClock"/>, timerfds on Linux.</summary>
    public static readonly LoopClocks Default = new SystemClocks();

    /// <summary>Now on <paramref name="clock"/>, nanoseconds.</summary>
    public abstract long Read(LoopClock clock);

    /// <summary>An absolute timer on <paramref name="clock"/>, or null where there is none (the loop then falls
    /// back to a relative wait).</summary>
    public abstract AbsoluteClockTimer? CreateTimer(LoopClock clock);

    /// <summary>An absolute timer on the monotonic clock, for a loop embedded in another (see
    /// <see cref="EventLoop.Descriptor"/>): its monotonic deadlines must wake the descriptor too. Null where none.</summary>
    public virtual AbsoluteClockTimer? CreateMonotonicTimer() => OperatingSystem.IsLinux() ? TimerFd.TryCreate(LoopClock.Monotonic) : null;

    private sealed class SystemClocks : LoopClocks
    {
        public override long Read(LoopClock clock) => TimerSource.ReadClock(clock);

        public override AbsoluteClockTimer? CreateTimer(LoopClock clock) =>
            clock != LoopClock.Monotonic && OperatingSystem.IsLinux() ? TimerFd.TryCreate(clock) : null;
    }
}

/// <summary>A kernel timer that makes its descriptor readable once its clock reaches the armed deadline.</summary>
internal abstract class AbsoluteClockTimer : IDisposable
{
    /// <summary>The descriptor the poller watches (readable when expired).</summary>
    public abstract int Descriptor { get; }

    /// <summary>Expires at <paramref name="deadline"/> (nanoseconds on the clock; one in the past expires at once);
    /// <see cref="long.MaxValue"/> disarms.</summary>
    public abstract void Arm(long deadline);

    /// <summary>Consumes the expiry (or a cancellation) so that the descriptor is no longer readable.</summary>
    public abstract void Acknowledge();

    /// <inheritdoc />
    public abstract void Dispose();
}

/// <summary>A Linux timerfd on CLOCK_REALTIME or CLOCK_BOOTTIME, armed with an absolute deadline.</summary>
internal sealed unsafe partial class TimerFd : AbsoluteClockTimer
{
    private const int CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1, CLOCK_BOOTTIME = 7;
    private const int TFD_TIMER_ABSTIME = 1, TFD_TIMER_CANCEL_ON_SET = 2;

    [LibraryImport("libc", SetLastError = true)] private static partial int timerfd_create(int clock, int flags);
    [LibraryImport("libc", SetLastError = true)] private static partial int timerfd_settime(int fd, int flags, long* value, long* old);

    private readonly int _fd;
    private readonly int _flags;

    private TimerFd(int fd, int flags)
    {
        _fd = fd;
        _flags = flags;
    }

    public static TimerFd? TryCreate(LoopClock clock)
    {
        int id = clock switch { LoopClock.Realtime => CLOCK_REALTIME, LoopClock.Monotonic => CLOCK_MONOTONIC, _ => CLOCK_BOOTTIME };
        int fd = timerfd_create(id, LibC.O_NONBLOCK_LINUX | LibC.O_CLOEXEC_LINUX) /* TFD_NONBLOCK | TFD_CLOEXEC */;
        if (fd < 0)
            return null; // an old kernel or a seccomp filter: the relative wait remains
        // Realtime: also cancelled (readable, read answers ECANCELED) whenever the wall clock is set, so that the loop
        // wakes, reads the clocks anew and re-arms; CANCEL_ON_SET is valid for CLOCK_REALTIME only.
        return new TimerFd(fd, clock == LoopClock.Realtime ? TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET : TFD_TIMER_ABSTIME);
    }

    public override int Descriptor => _fd;

    public override void Arm(long deadline)
    {
        long* spec = stackalloc long[4]; // itimerspec: it_interval {0, 0}, it_value {sec, nsec}
        spec[0] = spec[1] = 0;
        if (deadline == long.MaxValue)
        {
            spec[2] = spec[3] = 0; // disarms
        }
        else
        {
            deadline = Math.Max(deadline, 1); // {0, 0} would disarm: the epoch is as past as any other past moment
            spec[2] = deadline / 1_000_000_000;
            spec[3] = deadline % 1_000_000_000;
        }
        if (timerfd_settime(_fd, _flags, spec, null) != 0)
            throw new PosixException("timerfd_settime", Errno.Last);
    }

    public override void Acknowledge()
    {
        ulong expirations;
        LibC.read(_fd, (byte*)&expirations, 8); // EAGAIN (nothing) and ECANCELED (the clock was set) alike: consumed
    }

    public override void Dispose() => LibC.CloseQuietly(_fd);
}
