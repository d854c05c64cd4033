using System.CommandLine.Parsing;
using System.Runtime.InteropServices;
using IoMux.SocketProxy;
using IoMux.Interop;

namespace IoMux.Cli;

/// <summary>The DIR of <c>iomux serve</c>, checked while parsing: it must be a directory this process can open.
/// opendir(3) answers with the errno that names why not (ENOENT, ENOTDIR, EACCES, ELOOP), which a check through
/// System.IO would have to guess.</summary>
internal static partial class ServedDirectory
{
    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint opendir(string path);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int closedir(nint directory);

    /// <summary>Opens and closes <paramref name="path"/> as a directory.</summary>
    /// <exception cref="PosixException">opendir failed; <see cref="PosixException.Errno"/> says why.</exception>
    public static void Open(string path)
    {
        nint directory = opendir(path);
        if (directory == 0)
            throw Errno.Fail("opendir", path);
        closedir(directory);
    }

    /// <summary>The validator of the DIR argument: a parse error "DIR 'path': not a directory (ENOTDIR)".</summary>
    public static void Validate(ArgumentResult result)
    {
        var path = result.GetValueOrDefault<string>();
        try
        {
            Open(path);
        }
        catch (PosixException e)
        {
            result.AddError($"DIR '{path}': {UnixCommand.Reason(e.Errno)}");
        }
    }
}
