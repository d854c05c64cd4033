using System.Runtime.InteropServices;

namespace IoMux.Interop;

/// <summary>What a descriptor refers to, as far as readiness is concerned.</summary>
internal enum DescriptorKind : byte
{
    Other,
    RegularFile,
    Directory,
    Fifo,
    Socket,
    CharacterDevice,
}

/// <summary>fstat(2) and struct stat: the descriptor's kind, size and modification time. The layout of struct stat
/// differs per OS and architecture, so it is picked from <see cref="OsAbi.Stat"/> (where each is cited and was
/// compiled; checked by the layout tests on Linux). The poller's checks go through Core's <c>OsCalls</c>, which a
/// model can replace; they read the struct with <see cref="Read"/> too.</summary>
internal static unsafe partial class DescriptorProbe
{
    private const int S_IFMT = 0xF000, S_IFIFO = 0x1000, S_IFCHR = 0x2000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFSOCK = 0xC000;

    /// <summary>Room for struct stat on every supported OS (the largest, FreeBSD's, is 224 bytes).</summary>
    public const int BufferSize = 512;

    /// <summary>struct stat on this OS (<see cref="OsAbi.Stat"/>, where each layout is cited and was compiled).</summary>
    internal static readonly StatLayout Layout = OsAbi.Stat(Platform.Flavor, RuntimeInformation.ProcessArchitecture);

    /// <summary>Offset and width of st_mode.</summary>
    internal static (int Offset, int Width) ModeField => (Layout.ModeOffset, Layout.ModeWidth);

    /// <summary>Offset of the 64-bit st_size.</summary>
    internal static int SizeOffset => Layout.SizeOffset;

    /// <summary>Offset of st_mtim's seconds.</summary>
    internal static int ModifiedOffset => Layout.ModifiedOffset;

    // The symbol that fills Layout (OsAbi.Stat): macOS x86-64 exports the 64-bit-inode stat under a suffixed name;
    // NetBSD's header renames fstat to __fstat50 (its plain fstat is the stat12 compat entry); arm64 macOS and every
    // other OS export plain "fstat" with the modern layout (glibc since 2.33).
    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)] private static partial int fstat_plain(int fd, byte* buffer);
    [LibraryImport("libc", EntryPoint = "fstat$INODE64", SetLastError = true)] private static partial int fstat_inode64(int fd, byte* buffer);
    [LibraryImport("libc", EntryPoint = "__fstat50", SetLastError = true)] private static partial int fstat50(int fd, byte* buffer);

    /// <summary>fstat(2) into <paramref name="buffer"/> (<see cref="BufferSize"/> bytes), laid out as <see cref="Layout"/>:
    /// 0, or -1 with errno set.</summary>
    public static int Fstat(int fd, byte* buffer) => Layout.FstatSymbol switch
    {
        "fstat$INODE64" => fstat_inode64(fd, buffer),
        "__fstat50" => fstat50(fd, buffer),
        _ => fstat_plain(fd, buffer),
    };

    /// <summary>Kind, size and modification time (seconds since the epoch) in one fstat(2); 0, or the errno.</summary>
    public static int TryGetKindSizeAndModified(int fd, out DescriptorKind kind, out long size, out long modified)
    {
        byte* buffer = stackalloc byte[BufferSize];
        kind = DescriptorKind.Other;
        size = modified = 0;
        if (Fstat(fd, buffer) != 0)
            return Errno.Last;
        Read(buffer, Layout, out kind, out size, out modified);
        return 0;
    }

    /// <summary>Kind, size and modification time from a struct stat laid out as <paramref name="layout"/>.</summary>
    public static void Read(byte* buffer, StatLayout layout, out DescriptorKind kind, out long size, out long modified)
    {
        int mode = layout.ModeWidth == 4 ? *(int*)(buffer + layout.ModeOffset) : *(ushort*)(buffer + layout.ModeOffset);
        kind = KindOf(mode);
        size = *(long*)(buffer + layout.SizeOffset);
        modified = *(long*)(buffer + layout.ModifiedOffset);
    }

    // S_IFMT and the S_IF* types are Version 7's octal values on every OS here (Linux include/uapi/linux/stat.h,
    // freebsd-src sys/sys/stat.h, illumos-gate usr/src/uts/common/sys/stat.h).
    private static DescriptorKind KindOf(int mode) => (mode & S_IFMT) switch
    {
        S_IFREG => DescriptorKind.RegularFile,
        S_IFDIR => DescriptorKind.Directory,
        S_IFIFO => DescriptorKind.Fifo,
        S_IFSOCK => DescriptorKind.Socket,
        S_IFCHR => DescriptorKind.CharacterDevice,
        _ => DescriptorKind.Other,
    };
}
