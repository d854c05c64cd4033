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

/// <summary>Reads st_mode with fstat(2). The offset of st_mode in struct stat differs per OS and
/// architecture, so it is picked here from the headers of each (checked by the layout tests on Linux).</summary>
internal static unsafe class DescriptorProbe
{
    private const int S_IFMT = 0xF000, S_IFIFO = 0x1000, S_IFCHR = 0x2000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFSOCK = 0xC000;

    /// <summary>struct stat on this OS (<see cref="OsAbi.Stat"/>, where each layout is cited and was compiled).</summary>
    internal static readonly StatLayout Layout = OsAbi.Stat(Platform.Flavor, RuntimeInformation.ProcessArchitecture);

    /// <summary>Offset and width of st_mode.</summary>
    internal static (int Offset, int Width) ModeField => (Layout.ModeOffset, Layout.ModeWidth);

    /// <summary>Offset of the 64-bit st_size.</summary>
    internal static int SizeOffset => Layout.SizeOffset;

    /// <summary>Offset of st_mtim's seconds.</summary>
    internal static int ModifiedOffset => Layout.ModifiedOffset;

    /// <summary>Kind, size and modification time (seconds since the epoch) in one fstat(2); 0, or -errno.</summary>
    public static int TryGetKindSizeAndModified(int fd, out DescriptorKind kind, out long size, out long modified) =>
        TryGetKindSizeAndModified(OsCalls.Native, fd, out kind, out size, out modified);

    /// <summary>The same through <paramref name="os"/>: its fstat, read with its layout.</summary>
    public static int TryGetKindSizeAndModified(OsCalls os, int fd, out DescriptorKind kind, out long size, out long modified)
    {
        byte* buffer = stackalloc byte[512]; // larger than struct stat on every supported OS
        kind = DescriptorKind.Other;
        size = modified = 0;
        int errno = os.Fstat(fd, buffer);
        if (errno != 0)
            return -errno;
        var layout = os.Stat;
        int mode = layout.ModeWidth == 4 ? *(int*)(buffer + layout.ModeOffset) : *(ushort*)(buffer + layout.ModeOffset);
        kind = KindOf(mode);
        size = *(long*)(buffer + layout.SizeOffset);
        modified = *(long*)(buffer + layout.ModifiedOffset);
        return 0;
    }

    /// <summary>Kind and size in one fstat(2); 0, or -errno.</summary>
    public static int TryGetKindAndSize(int fd, out DescriptorKind kind, out long size) =>
        TryGetKindSizeAndModified(OsCalls.Native, fd, out kind, out size, out _);

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

    /// <summary>Returns the descriptor's kind, or -errno when fstat fails (e.g. EBADF for a closed fd).</summary>
    public static int TryGetKind(int fd, out DescriptorKind kind) => TryGetKind(OsCalls.Native, fd, out kind);

    /// <summary>The same through <paramref name="os"/>.</summary>
    public static int TryGetKind(OsCalls os, int fd, out DescriptorKind kind) =>
        TryGetKindSizeAndModified(os, fd, out kind, out _, out _);

    /// <summary>The check every backend makes on add: the descriptor must be open and waitable.</summary>
    public static DescriptorKind RequireWaitable(int fd, string operation) => RequireWaitable(OsCalls.Native, fd, operation);

    /// <summary>The same through <paramref name="os"/>.</summary>
    public static DescriptorKind RequireWaitable(OsCalls os, int fd, string operation)
    {
        int rc = TryGetKind(os, fd, out var kind);
        if (rc < 0)
            throw new PosixException(operation, -rc, $"fd {fd}");
        if (kind == DescriptorKind.RegularFile)
            throw new UnsupportedDescriptorException(fd, "regular file");
        if (kind == DescriptorKind.Directory)
            throw new UnsupportedDescriptorException(fd, "directory");
        return kind;
    }
}
