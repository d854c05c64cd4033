using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>The portable libc calls IoMux shares across backends. Every call records errno
/// (SetLastError); read it with <see cref="Errno.Last"/> right after the call.</summary>
/// <remarks>How IoMux's own wrappers below <see cref="PosixException"/> answer a failure, one rule by the shape of
/// the call (issue 25): a call that only succeeds or fails returns <b>0 or the errno</b> (epoll_ctl, kevent's change
/// list, fstat, getsockopt: <c>if (errno != 0)</c>); a call that produces a number returns <b>the number or -errno</b>,
/// the kernel's own convention (accept, a kevent wait, read/write/splice counts); a call that can produce a number
/// <i>and</i> fail in the same call returns the number with an <b><c>out int errno</c></b> (a backend's
/// <c>KernelWait</c>: port_getn hands over events with ETIME or EINTR; sendfile moves part of a file, then
/// fails).</remarks>
internal static unsafe partial class LibC
{
    /// <summary>fcntl commands and the descriptor flag FD_CLOEXEC: Version 7's and 4.4BSD's numbers on every OS here
    /// (Linux include/uapi/asm-generic/fcntl.h, freebsd-src sys/sys/fcntl.h, illumos-gate usr/src/uts/common/sys/fcntl.h).</summary>
    public const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4;
    /// <summary>The close-on-exec descriptor flag of F_SETFD: 1 everywhere (see above). Where a call takes a
    /// close-on-exec flag of its own (Linux only here), that is <see cref="O_CLOEXEC_LINUX"/>.</summary>
    public const int FD_CLOEXEC = 1;

    /// <summary>Linux's O_CLOEXEC: 02000000 octal in include/uapi/asm-generic/fcntl.h (torvalds/linux
    /// a3928246651b92dec93a47b99c49ff3151b08bae; the architectures that override it have no .NET port). The kernel
    /// defines every other close-on-exec creation flag as O_CLOEXEC: SOCK_CLOEXEC (include/linux/net.h), EPOLL_CLOEXEC
    /// (include/uapi/linux/eventpoll.h), EFD_CLOEXEC (include/linux/eventfd.h), TFD_CLOEXEC (include/uapi/linux/timerfd.h),
    /// IN_CLOEXEC (include/uapi/linux/inotify.h), pipe2's flag; so this one constant is all of them. The other OSes
    /// number O_CLOEXEC differently, and IoMux sets <see cref="FD_CLOEXEC"/> with fcntl there.</summary>
    public const int O_CLOEXEC_LINUX = 0x80000;

    /// <summary>Linux's O_NONBLOCK as a constant (<see cref="O_NONBLOCK"/> is this OS's): SOCK_NONBLOCK, EFD_NONBLOCK,
    /// TFD_NONBLOCK and IN_NONBLOCK are defined as O_NONBLOCK in the same headers.</summary>
    public const int O_NONBLOCK_LINUX = 0x800;

    /// <summary>O_NONBLOCK differs per OS. Linux: 00004000 (octal, 0x800) in include/uapi/asm-generic/fcntl.h
    /// (torvalds/linux a3928246651b92dec93a47b99c49ff3151b08bae; every architecture .NET runs on takes the generic
    /// value: alpha, mips, parisc and sparc, which override it, have no .NET port). FreeBSD: 0x0004 in
    /// sys/sys/fcntl.h (freebsd/freebsd-src b972b67ed72b5687a023c92602aaef64163b2f59), as the other 4.4BSD
    /// descendants. macOS: 0x00000004 in bsd/sys/fcntl.h (apple-oss-distributions/xnu
    /// e6231be02a03711ca404e5121a151b24afbff733). illumos: 0x80 in usr/src/uts/common/sys/fcntl.h
    /// (illumos/illumos-gate 5dbfd19ad5fcc2b779f40f80fa05c1bd28fd0b4e; its 0x04 is the older O_NDELAY).</summary>
    public static readonly int O_NONBLOCK = OperatingSystem.IsLinux() ? 0x800 : Platform.IsIllumos ? 0x80 : 0x4;
    /// <summary>FIONREAD: bytes available to read (<see cref="OsAbi.FionRead"/>).</summary>
    public static readonly nuint FIONREAD = OsAbi.FionRead(Platform.Flavor);
    /// <summary>RLIMIT_NOFILE (<see cref="OsAbi.RlimitNofile"/>).</summary>
    public static readonly int RLIMIT_NOFILE = OsAbi.RlimitNofile(Platform.Flavor);
    public static readonly int MSG_PEEK = 0x2;
    /// <summary>MSG_DONTWAIT: Linux 0x40 (include/linux/socket.h); 0x80 on the BSDs, macOS and illumos (LayoutTests
    /// checks it against this machine's headers).</summary>
    public static readonly int MSG_DONTWAIT = OperatingSystem.IsLinux() ? 0x40 : 0x80;

    [LibraryImport("libc", SetLastError = true)] public static partial nint read(int fd, byte* buffer, nuint count);
    [LibraryImport("libc", SetLastError = true)] public static partial nint write(int fd, byte* buffer, nuint count);
    [LibraryImport("libc", SetLastError = true)] public static partial int close(int fd);
    [LibraryImport("libc", SetLastError = true)] public static partial int fcntl(int fd, int cmd, int arg);
    [LibraryImport("libc", SetLastError = true)] public static partial int ioctl(int fd, nuint request, int* arg);
    [LibraryImport("libc", SetLastError = true)] public static partial int pipe(int* fds);
    [LibraryImport("libc", SetLastError = true)] public static partial int dup(int fd);
    [LibraryImport("libc", SetLastError = true)] public static partial int dup2(int fd, int target);
    [LibraryImport("libc", SetLastError = true)] public static partial int dup3(int fd, int target, int flags);
    // Private: every accept goes through Accept below (one accept4, one fallback).
    [LibraryImport("libc", SetLastError = true)] private static partial int accept(int fd, void* address, void* addressLength);
    [LibraryImport("libc", SetLastError = true)] private static partial int accept4(int fd, void* address, void* addressLength, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int getpeername(int fd, void* address, uint* addressLength);
    [LibraryImport("libc", SetLastError = true)] public static partial int getsockopt(int fd, int level, int option, void* value, uint* length);
    [LibraryImport("libc", SetLastError = true)] public static partial int socketpair(int domain, int type, int protocol, int* fds);
    [LibraryImport("libc", SetLastError = true)] public static partial int shutdown(int fd, int how);
    [LibraryImport("libc", SetLastError = true)] public static partial int getuid();
    [LibraryImport("libc", SetLastError = true)] public static partial int geteuid();
    [LibraryImport("libc", SetLastError = true)] public static partial int getgid();
    [LibraryImport("libc", SetLastError = true)] public static partial int getegid();

    /// <summary>Creates a pipe with both ends non-blocking and close-on-exec (pipe2 is not on every OS).</summary>
    public static void CreateNonBlockingPipe(out int readEnd, out int writeEnd)
    {
        int* fds = stackalloc int[2];
        if (pipe(fds) != 0)
            throw Errno.Fail("pipe");
        readEnd = fds[0];
        writeEnd = fds[1];
        SetNonBlockingCloseOnExec(readEnd);
        SetNonBlockingCloseOnExec(writeEnd);
    }

    public static void SetNonBlockingCloseOnExec(int fd)
    {
        int flags = fcntl(fd, F_GETFL, 0);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        {
            var error = Errno.Fail("fcntl", $"fd {fd}");
            throw error;
        }
    }

    /// <summary>accept(2) with the new descriptor non-blocking and close-on-exec, as every IoMux server and
    /// <c>Registration.Accept</c> take connections: accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC on Linux (one call, no
    /// window in which a fork could inherit the descriptor); elsewhere accept, then fcntl, closing the new descriptor
    /// again when fcntl fails (nothing leaks). <paramref name="address"/> and <paramref name="addressLength"/> as
    /// accept's (both null when the peer's address is not wanted).</summary>
    /// <returns>The new descriptor, or -errno when accept failed (EAGAIN, EINTR, ECONNABORTED, EMFILE...).</returns>
    /// <exception cref="PosixException">fcntl failed on the accepted descriptor (which is closed).</exception>
    public static int Accept(int listener, void* address, uint* addressLength)
    {
        int fd = OperatingSystem.IsLinux()
            ? accept4(listener, address, addressLength, O_NONBLOCK_LINUX | O_CLOEXEC_LINUX)
            : accept(listener, address, addressLength);
        if (fd < 0)
            return -Errno.Last;
        if (!OperatingSystem.IsLinux())
            SetNonBlockingCloseOnExecOrClose(fd);
        return fd;
    }

    /// <summary><see cref="Accept(int, void*, uint*)"/> without the peer's address.</summary>
    public static int Accept(int listener) => Accept(listener, null, null);

    /// <summary><see cref="SetNonBlockingCloseOnExec"/> for a descriptor the caller just created: closed again when
    /// fcntl fails, so a failure leaks nothing.</summary>
    public static void SetNonBlockingCloseOnExecOrClose(int fd)
    {
        try
        {
            SetNonBlockingCloseOnExec(fd);
        }
        catch
        {
            CloseQuietly(fd);
            throw;
        }
    }

    /// <summary>Closes <paramref name="fd"/>, ignoring EINTR (on Linux the descriptor is released anyway;
    /// retrying could close a number another thread just got).</summary>
    public static void CloseQuietly(int fd)
    {
        if (fd >= 0)
            close(fd);
    }
}
