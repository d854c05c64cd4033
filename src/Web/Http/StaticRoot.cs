using System.Runtime.InteropServices;
using System.Text;
using System.Text.Unicode;
using IoMux.Interop;

namespace IoMux.Web.Http;

/// <summary>The directory a static server serves, and the one way into it: <see cref="Open"/> turns a request
/// target into an open regular file under the root, or a status. Everything that would leave the root is
/// refused: "..", its percent-encoded forms, NUL, invalid escapes or UTF-8, and symbolic links whose target is
/// outside. On Linux 5.6+ the kernel enforces the last one in the open itself (openat2 with RESOLVE_BENEATH:
/// one system call, no check-then-open race); elsewhere the real path is checked (realpath) before opening.</summary>
internal sealed unsafe partial class StaticRoot : IDisposable
{
    private const int O_RDONLY = 0, O_DIRECTORY_LINUX = 0x10000, O_PATH_LINUX = 0x200000;
    private const ulong RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_BENEATH = 0x08;
    private const long SYS_openat2 = 437;
    private const int EXDEV = 18; // Linux only, like openat2 // the same number on every Linux architecture (added after the unification)

    [StructLayout(LayoutKind.Sequential)]
    private struct OpenHow
    {
        public ulong Flags, Mode, Resolve;
    }

    private readonly int _rootFd = -1;
    private bool _openat2;

    public StaticRoot(string root)
    {
        RealRoot = RealPath(Path.GetFullPath(root)) ?? throw new DirectoryNotFoundException(root);
        if (OperatingSystem.IsLinux())
        {
            _rootFd = open(RealRoot, O_PATH_LINUX | O_DIRECTORY_LINUX | LibC.O_CLOEXEC_LINUX);
            _openat2 = _rootFd >= 0;
        }
    }

    /// <summary>The root with every symbolic link resolved.</summary>
    public string RealRoot { get; }

    /// <summary>Opens what <paramref name="target"/> names (a directory means its index.html). Returns 0 with an
    /// open non-blocking descriptor of a regular file, its size, modification time (seconds since the epoch) and
    /// content type; or 301 (a directory named without its trailing slash: relative references in its index would
    /// resolve against the parent, so the client is sent to the slashed path, as nginx does), 400 (malformed,
    /// climbing above the root) or 404 (missing, not a regular file, or reached through a link that leaves the root).</summary>
    public int Open(ReadOnlySpan<byte> target, out int fd, out long size, out long modified, out byte[] contentType)
    {
        fd = -1;
        size = modified = 0;
        contentType = ContentTypes.Default;
        Span<byte> path = stackalloc byte[HttpRequestParser.MaxRequestLine + 16];
        int status = Normalize(target, path, out int length, out bool directoryForm);
        if (status != 0)
            return status;
        fd = OpenBeneath(path, length);
        if (fd < 0)
            return 404;
        if (DescriptorProbe.TryGetKindSizeAndModified(fd, out var kind, out size, out modified) != 0 || kind == DescriptorKind.Directory)
        {
            LibC.CloseQuietly(fd);
            fd = -1;
            if (kind != DescriptorKind.Directory)
                return 404;
            if (!directoryForm)
                return 301;
            var index = length == 0 ? "index.html"u8 : "/index.html"u8;
            index.CopyTo(path[length..]);
            length += index.Length;
            fd = OpenBeneath(path, length);
            if (fd < 0 || DescriptorProbe.TryGetKindSizeAndModified(fd, out kind, out size, out modified) != 0 || kind != DescriptorKind.RegularFile)
                return CloseAnd404(ref fd);
        }
        else if (kind != DescriptorKind.RegularFile)
        {
            return CloseAnd404(ref fd); // a FIFO, a device: never served (O_NONBLOCK kept the open from hanging)
        }
        contentType = ContentTypes.For(path[..length]);
        return 0;
    }

    private static int CloseAnd404(ref int fd)
    {
        LibC.CloseQuietly(fd);
        fd = -1;
        return 404;
    }

    /// <summary>Percent-decodes and normalizes the path of <paramref name="target"/> into <paramref name="output"/>
    /// (relative, no leading slash, "" for the root). 0, or 400.</summary>
    internal static int Normalize(ReadOnlySpan<byte> target, Span<byte> output, out int length) =>
        Normalize(target, output, out length, out _);

    /// <summary>As <see cref="Normalize(ReadOnlySpan{byte}, Span{byte}, out int)"/>; <paramref name="directoryForm"/>:
    /// the path names a directory as such (its last segment is empty, "." or "..").</summary>
    internal static int Normalize(ReadOnlySpan<byte> target, Span<byte> output, out int length, out bool directoryForm)
    {
        length = 0;
        directoryForm = true;
        int end = target.IndexOfAny((byte)'?', (byte)'#');
        if (end >= 0)
            target = target[..end];
        Span<byte> decoded = stackalloc byte[target.Length];
        int n = 0;
        for (int i = 0; i < target.Length; i++)
        {
            byte b = target[i];
            if (b == '%')
            {
                if (i + 2 >= target.Length || !IsHex(target[i + 1]) || !IsHex(target[i + 2]))
                    return 400;
                b = (byte)(Hex(target[i + 1]) << 4 | Hex(target[i + 2]));
                i += 2;
                if (b == 0)
                    return 400;
            }
            decoded[n++] = b;
        }
        decoded = decoded[..n];
        if (!Utf8.IsValid(decoded))
            return 400;
        foreach (var range in decoded.Split((byte)'/'))
        {
            var segment = decoded[range];
            directoryForm = segment.IsEmpty || segment.SequenceEqual("."u8) || segment.SequenceEqual(".."u8);
            if (segment.IsEmpty || segment.SequenceEqual("."u8))
                continue;
            if (segment.SequenceEqual(".."u8))
            {
                if (length == 0)
                    return 400; // climbing above the root, answered as nginx does
                int slash = output[..length].LastIndexOf((byte)'/');
                length = slash < 0 ? 0 : slash;
                continue;
            }
            if (length > 0)
                output[length++] = (byte)'/';
            segment.CopyTo(output[length..]);
            length += segment.Length;
        }
        return 0;
    }

    private int OpenBeneath(Span<byte> path, int length)
    {
        Span<byte> terminated = stackalloc byte[length + 2];
        if (length == 0)
            terminated[0] = (byte)'.';
        else
            path[..length].CopyTo(terminated);
        terminated[Math.Max(length, 1)] = 0;
        int flags = O_RDONLY | LibC.O_NONBLOCK | (OperatingSystem.IsLinux() ? LibC.O_CLOEXEC_LINUX : 0);
        if (_openat2)
        {
            var how = new OpenHow { Flags = (ulong)flags, Resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
            fixed (byte* p = terminated)
            {
                long fd = openat2(SYS_openat2, _rootFd, p, &how, (nuint)sizeof(OpenHow));
                if (fd >= 0)
                    return (int)fd;
                int errno = Errno.Last;
                if (errno == Errno.ENOSYS)
                    _openat2 = false; // a kernel before 5.6: the portable way from now on
                else if (errno != EXDEV)
                    return -1; // ENOENT, EACCES, ELOOP...
                // EXDEV: resolution left the root, or met an absolute link (refused by RESOLVE_BENEATH even when it
                // points back inside): the real path decides, below.
            }
        }
        string full = length == 0 ? RealRoot : Path.Join(RealRoot, Encoding.UTF8.GetString(path[..length]));
        string? real = RealPath(full);
        if (real is null || !IsBeneathRoot(real))
            return -1;
        int opened = open(real, flags);
        if (opened < 0)
            return -1;
        if (!OperatingSystem.IsLinux())
        {
            // Without openat2 the check above and the open are two steps: a link swapped in between is followed.
            // The BSDs and illumos have no RESOLVE_BENEATH to close that window (FreeBSD's O_RESOLVE_BENEATH is
            // 13+ only); docs/SERVERS.md says so.
            LibC.fcntl(opened, LibC.F_SETFD, LibC.FD_CLOEXEC);
            return opened;
        }
        // Linux after EXDEV: check what was opened, not what the path named a moment before (a link swapped in
        // between the realpath and the open would otherwise be followed out of the root). /proc/self/fd/N names
        // the file the descriptor refers to; no /proc, or a path outside, and the file is not served.
        if (OpenedPath(opened) is { } openedPath && IsBeneathRoot(openedPath))
            return opened;
        LibC.CloseQuietly(opened);
        return -1;
    }

    private bool IsBeneathRoot(string real) =>
        real == RealRoot || real.StartsWith(RealRoot == "/" ? "/" : RealRoot + "/", StringComparison.Ordinal);

    /// <summary>The path of the file <paramref name="fd"/> refers to, read from /proc (Linux), or null.</summary>
    private static string? OpenedPath(int fd)
    {
        Span<byte> buffer = stackalloc byte[4096];
        nint n;
        fixed (byte* p = buffer)
            n = readlink($"/proc/self/fd/{fd}", p, (nuint)buffer.Length);
        return n <= 0 || n >= buffer.Length ? null : Encoding.UTF8.GetString(buffer[..(int)n]);
    }

    /// <summary>realpath(3): every link, "." and ".." resolved by the kernel; null when the path does not exist.</summary>
    public static string? RealPath(string path)
    {
        byte* resolved = realpath(path, null);
        if (resolved is null)
            return null;
        try
        {
            return Marshal.PtrToStringUTF8((nint)resolved);
        }
        finally
        {
            NativeMemory.Free(resolved); // realpath(path, NULL) mallocs its result
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial byte* realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* resolved);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint readlink([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* buffer, nuint size);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    // glibc 2.36 has no openat2 wrapper: the raw system call (syscall(2) is assembly and reads no va_list, so
    // binding it with fixed integer arguments is sound on x86-64 and arm64).
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long openat2(long number, int directory, byte* path, OpenHow* how, nuint size);

    private static bool IsHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';

    private static int Hex(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;

    public void Dispose() => LibC.CloseQuietly(_rootFd);
}
