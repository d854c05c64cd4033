using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>struct timespec on the LP64 systems IoMux runs on: a 64-bit time_t and a long, 16 bytes (Linux
/// include/uapi/linux/time_types.h __kernel_timespec; freebsd-src sys/sys/_timespec.h; xnu bsd/sys/_types/_timespec.h;
/// illumos-gate usr/src/uts/common/sys/time_impl.h). The timeouts of epoll_pwait2, kevent and port_getn; AbiCheck
/// compares its size with the machine's header.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Timespec
{
    public long Seconds;
    public long Nanoseconds;

    /// <summary><paramref name="span"/> as a timespec (TimeSpan's 100 ns ticks; never negative here).</summary>
    public static Timespec From(TimeSpan span) => new()
    {
        Seconds = span.Ticks / TimeSpan.TicksPerSecond,
        Nanoseconds = span.Ticks % TimeSpan.TicksPerSecond * 100,
    };
}
