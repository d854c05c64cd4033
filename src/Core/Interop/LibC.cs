using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>The portable libc calls IoMux shares across backends. Every call records errno
/// (SetLastError); read it with <see cref="Errno.Last"/> right after the call.</summary>
internal static unsafe partial class LibC
{
    public const int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4;
    public const int FD_CLOEXEC = 1;

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
    public static readonly int MSG_DONTWAIT = OperatingSystem.IsLinux() ? 0x40 : Platform.IsIllumos ? 0x80 : 0x80;

    [LibraryImport("libc", SetLastError = true)] public static partial nint read(int fd, byte* buffer, nuint count);
    [LibraryImport("libc", SetLastError = true)] public static partial nint write(int fd, byte* buffer, nuint count);
    [LibraryImport("libc", SetLastError = true)] public static partial int close(int fd);
    [LibraryImport("libc", SetLastError = true)] public static partial int fcntl(int fd, int cmd, int arg);
    [LibraryImport("libc", SetLastError = true)] public static partial int ioctl(int fd, nuint request, int* arg);
    [LibraryImport("libc", SetLastError = true)] public static partial int pipe(int* fds);
    [LibraryImport("libc", SetLastError = true)] public static partial int dup(int fd);
    [LibraryImport("libc", SetLastError = true)] public static partial int dup2(int fd, int target);
    [LibraryImport("libc", SetLastError = true)] public static partial int dup3(int fd, int target, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int accept(int fd, void* address, void* addressLength);
    [LibraryImport("libc", SetLastError = true)] public static partial int accept4(int fd, void* address, void* addressLength, int flags);
    [LibraryImport("libc", SetLastError = true)] public static partial int getpeername(int fd, void* address, uint* addressLength);
    [LibraryImport("libc", SetLastError = true)] public static partial int getsockopt(int fd, int level, int option, void* value, uint* length);
    [LibraryImport("libc", SetLastError = true)] public static partial int socketpair(int domain, int type, int protocol, int* fds);
    [LibraryImport("libc", SetLastError = true)] public static partial int shutdown(int fd, int how);
    [LibraryImport("libc", SetLastError = true)] public static partial int getuid();
    [LibraryImport("libc", SetLastError = true)] public static partial int geteuid();
    [LibraryImport("libc", SetLastError = true)] public static partial int getgid();
    [LibraryImport("libc", SetLastError = true)] public static partial int getegid();

    // The symbol that fills DescriptorProbe.Layout (OsAbi.Stat): macOS x86-64 exports the 64-bit-inode stat under
    // a suffixed name; NetBSD's header renames fstat to __fstat50 (its plain fstat is the stat12 compat entry);
    // arm64 macOS and every other OS export plain "fstat" with the modern layout (glibc since 2.33).
    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)] private static partial int fstat_plain(int fd, byte* buffer);
    [LibraryImport("libc", EntryPoint = "fstat$INODE64", SetLastError = true)] private static partial int fstat_inode64(int fd, byte* buffer);
    [LibraryImport("libc", EntryPoint = "__fstat50", SetLastError = true)] private static partial int fstat50(int fd, byte* buffer);

    public static int fstat(int fd, byte* buffer) => DescriptorProbe.Layout.FstatSymbol switch
    {
        "fstat$INODE64" => fstat_inode64(fd, buffer),
        "__fstat50" => fstat50(fd, buffer),
        _ => fstat_plain(fd, buffer),
    };

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

    /// <summary>Closes <paramref name="fd"/>, ignoring EINTR (on Linux the descriptor is released anyway;
    /// retrying could close a number another thread just got).</summary>
    public static void CloseQuietly(int fd)
    {
        if (fd >= 0)
            close(fd);
    }
}

/// <summary>OS facts that <see cref="OperatingSystem"/> does not answer.</summary>
internal static class Platform
{
    /// <summary>Which Unix this is. Linux answers first: OSDescription reads /etc/os-release there, a cost at every
    /// start (a socket-activated proxy's client waits).</summary>
    public static readonly UnixFlavor Flavor =
        OperatingSystem.IsLinux() ? UnixFlavor.Linux
        : OperatingSystem.IsFreeBSD() ? UnixFlavor.FreeBSD
        : OperatingSystem.IsMacOS() ? UnixFlavor.MacOS
        : Classify(RuntimeInformation.OSDescription, IsPlatformNamed("ILLUMOS"), IsPlatformNamed("SOLARIS"));

    /// <summary>illumos and Solaris (the .NET community ports report "SunOS" or "illumos").</summary>
    public static readonly bool IsIllumos = Flavor is UnixFlavor.Illumos or UnixFlavor.Solaris;

    /// <summary>The flavor of an OS that is neither Linux, FreeBSD nor macOS, from its <see cref="RuntimeInformation.OSDescription"/>
    /// (.NET builds it from uname: sysname, release, version). DragonFly's sysname is "DragonFly", without "BSD".
    /// Oracle Solaris and illumos both say "SunOS 5.11"; Solaris's version field is its release ("11.4.42.111.0"),
    /// illumos distributions put their own name there ("omnios-r151050-…", "joyent_20240516T…", "illumos-…").</summary>
    internal static UnixFlavor Classify(string description, bool illumosPlatform = false, bool solarisPlatform = false)
    {
        static bool Has(string text, string word) => text.Contains(word, StringComparison.OrdinalIgnoreCase);
        if (Has(description, "NetBSD"))
            return UnixFlavor.NetBSD;
        if (Has(description, "OpenBSD"))
            return UnixFlavor.OpenBSD;
        if (Has(description, "DragonFly"))
            return UnixFlavor.DragonFly;
        if (Has(description, "FreeBSD"))
            return UnixFlavor.FreeBSD;
        if (Has(description, "Darwin"))
            return UnixFlavor.MacOS;
        if (Has(description, "SunOS") || Has(description, "illumos") || illumosPlatform || solarisPlatform)
        {
            var fields = description.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            bool oracleVersion = fields.Length >= 3 && fields[0].Equals("SunOS", StringComparison.OrdinalIgnoreCase)
                && fields[2].StartsWith("11.", StringComparison.Ordinal);
            return (oracleVersion || solarisPlatform) && !Has(description, "illumos") ? UnixFlavor.Solaris : UnixFlavor.Illumos;
        }
        if (Has(description, "Linux"))
            return UnixFlavor.Linux;
        return UnixFlavor.Unknown;
    }

    // Read through a variable: the analyzer only knows the platform names Microsoft ships.
    private static bool IsPlatformNamed(string name) => OperatingSystem.IsOSPlatform(name);

    /// <summary>True when the process runs with other privileges than the user who started it; environment
    /// overrides are then ignored, as libevent and libev do.</summary>
    public static bool IsSetuid => LibC.getuid() != LibC.geteuid() || LibC.getgid() != LibC.getegid();
}
