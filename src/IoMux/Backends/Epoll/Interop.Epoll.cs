using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.Epoll;

/// <summary>epoll(7) and eventfd(2) as libc exports them.</summary>
internal static unsafe partial class EpollInterop
{
    public const int EPOLL_CLOEXEC = LibC.O_CLOEXEC_LINUX; // uapi/linux/eventpoll.h: O_CLOEXEC
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    public const uint EPOLLIN = 0x001, EPOLLPRI = 0x002, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010;
    public const uint EPOLLRDHUP = 0x2000, EPOLLEXCLUSIVE = 1u << 28, EPOLLONESHOT = 1u << 30, EPOLLET = 1u << 31;
    public const int EFD_CLOEXEC = LibC.O_CLOEXEC_LINUX, EFD_NONBLOCK = LibC.O_NONBLOCK_LINUX; // linux/eventfd.h: O_CLOEXEC, O_NONBLOCK

    /// <summary>struct epoll_event is packed on x86-64 only (uapi eventpoll.h: EPOLL_PACKED under __x86_64__):
    /// 12 bytes with the data word at offset 4. Everywhere else it is naturally aligned: 16 bytes, data at 8.</summary>
    public static readonly int EventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    public static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_create1(int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_ctl(int epfd, int op, int fd, byte* ev);
    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_wait(int epfd, byte* events, int maxEvents, int timeoutMs);
    /// <summary>epoll_wait with a zero timeout, which never blocks: the one kernel call a busy loop makes between
    /// work items, so it skips the GC transition (a call that cannot block may, dotnet/runtime's own
    /// SystemNative_* calls do the same) and the SetLastError wrapper's two extra calls. The caller reads errno
    /// with <see cref="Marshal.GetLastSystemError"/> right after it: no runtime code runs in between.</summary>
    [LibraryImport("libc", EntryPoint = "epoll_wait"), SuppressGCTransition]
    public static partial int epoll_wait_nonblocking(int epfd, byte* events, int maxEvents, int zeroTimeout);

    [LibraryImport("libc", SetLastError = true)] public static partial int epoll_pwait2(int epfd, byte* events, int maxEvents, Timespec* timeout, void* sigmask);
    [LibraryImport("libc", SetLastError = true)] public static partial int eventfd(uint initval, int flags);

    public static void WriteEvent(byte* slot, uint events, ulong data)
    {
        *(uint*)slot = events;
        *(ulong*)(slot + DataOffset) = data; // unaligned on x86-64, which the CPU handles
    }

    public static uint ReadEvents(byte* slot) => *(uint*)slot;
    public static ulong ReadData(byte* slot) => *(ulong*)(slot + DataOffset);
}
