using System.Runtime.InteropServices;
using System.Text;

namespace IoMux.Web.Http;

/// <summary>From a request target to a file under the served root, refusing everything that would leave it:
/// "..", its percent-encoded forms, NUL, invalid escapes, and symbolic links whose target is outside the root
/// (checked on the real path, after the kernel resolved every link).</summary>
public static partial class RequestPath
{
    /// <summary>Maps <paramref name="target"/> (the request target as sent) to a path under
    /// <paramref name="realRoot"/> (a directory path with symlinks already resolved, see <see cref="RealPath"/>).
    /// Returns 0 with <paramref name="path"/> set, or the status to answer: 400 (malformed, or climbing above the
    /// root), 404 (missing, or a link leaving the root).</summary>
    public static int Resolve(ReadOnlySpan<byte> target, string realRoot, out string path)
    {
        path = "";
        int query = target.IndexOfAny((byte)'?', (byte)'#');
        if (query >= 0)
            target = target[..query];
        Span<byte> decoded = target.Length <= 1024 ? stackalloc byte[target.Length] : new byte[target.Length];
        int length = 0;
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
            decoded[length++] = b;
        }
        string text;
        try
        {
            text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(decoded[..length]);
        }
        catch (DecoderFallbackException)
        {
            return 400;
        }
        var segments = new List<string>();
        foreach (var segment in text.Split('/'))
        {
            if (segment.Length == 0 || segment == ".")
                continue;
            if (segment == "..")
            {
                if (segments.Count == 0)
                    return 400; // climbing above the root, as nginx answers it
                segments.RemoveAt(segments.Count - 1);
                continue;
            }
            segments.Add(segment);
        }
        string candidate = segments.Count == 0 ? realRoot : Path.Join(realRoot, string.Join('/', segments));
        if (Directory.Exists(candidate))
            candidate = Path.Join(candidate, "index.html");
        string? real = RealPath(candidate);
        if (real is null || !(real.StartsWith(realRoot + "/", StringComparison.Ordinal)) || Directory.Exists(real))
            return 404;
        path = real;
        return 0;
    }

    /// <summary>The path with every symbolic link, ".." and "." resolved by the kernel (realpath(3)); null when it
    /// does not exist.</summary>
    public static unsafe string? RealPath(string path)
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
    private static unsafe partial byte* realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* resolved);

    private static bool IsHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';

    private static int Hex(byte b) => b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
}
