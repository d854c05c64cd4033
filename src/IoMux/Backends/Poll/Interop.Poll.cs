using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.Poll;

/// <summary>poll(2) and select(2) as libc exports them. The low poll bits are the same on every POSIX system;
/// POLLRDHUP is not (<see cref="OsAbi.PollRdHup"/>: Linux 0x2000, illumos 0x4000, absent on Solaris, the BSDs and macOS).</summary>
internal static unsafe partial class PollInterop
{
    public const short POLLIN = 0x1, POLLPRI = 0x2, POLLOUT = 0x4, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;

    /// <summary>0 where the OS has no POLLRDHUP, or where this illumos kernel does not report it (probed).</summary>
    public static readonly short POLLRDHUP = OsAbi.ReadHangupBit;

    /// <summary>FD_SETSIZE: 1024 on Linux, the BSDs and macOS; 65536 for 64-bit illumos programs.</summary>
    public static readonly int FD_SETSIZE = Platform.IsIllumos ? 65536 : 1024;

    [LibraryImport("libc", SetLastError = true)] public static partial int poll(PollFd* fds, nuint count, int timeoutMs);
    [LibraryImport("libc", SetLastError = true)] public static partial int select(int nfds, ulong* readFds, ulong* writeFds, ulong* exceptFds, Timeval* timeout);
}

/// <summary>struct timeval on LP64 systems (macOS pads its 32-bit tv_usec to the same 16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Timeval
{
    public long Seconds;
    public long Microseconds;

    /// <summary>Rounded up to the microsecond, so a tiny timeout never becomes a zero timeout.</summary>
    public static Timeval From(TimeSpan span)
    {
        long micros = (span.Ticks + 9) / 10;
        return new Timeval { Seconds = micros / 1_000_000, Microseconds = micros % 1_000_000 };
    }
}
