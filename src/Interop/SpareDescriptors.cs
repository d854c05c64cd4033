// Linked into the assemblies that serve (IoMux.Web, IoMux.AspNetCore, iomux-socket-proxyd), not into Core: app-level
// interop is not part of the poller. Each gets its own internal copy (docs/API-REVIEW.md, "One interop home").
namespace IoMux.Interop;

/// <summary>A few descriptors (/dev/null) held while the process is well and given back when it hits its
/// descriptor limit (EMFILE), so it keeps some headroom there: the .NET runtime itself needs a descriptor now
/// and then, and was measured to abort ("Out of memory.") at the limit without any. A server gives the spares
/// back at its first EMFILE and resumes accepting only once it could take them again.</summary>
internal sealed partial class SpareDescriptors(int count = 4) : IDisposable
{
    private readonly int[] _fds = Unheld(count);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    /// <summary>-1 in every place. A loop, not Enumerable.Repeat: that one over int is JIT-compiled at start.</summary>
    private static int[] Unheld(int count)
    {
        var fds = new int[count];
        for (int i = 0; i < count; i++)
            fds[i] = -1;
        return fds;
    }

    // O_RDONLY (0 everywhere) | O_CLOEXEC on Linux; elsewhere without it (a spare is closed again long before any exec
    // a server makes matters little, and O_CLOEXEC's number differs per OS).
    private static int OpenOne() => open("/dev/null", OperatingSystem.IsLinux() ? LibC.O_CLOEXEC_LINUX : 0);

    /// <summary>How many spares are not held now (given back, or failed to open).</summary>
    public int Missing => _fds.Count(fd => fd < 0);

    /// <summary>Opens the spares not held; false while the process is still at its limit.</summary>
    public bool Take()
    {
        for (int i = 0; i < _fds.Length; i++)
            if (_fds[i] < 0 && (_fds[i] = OpenOne()) < 0)
                return false;
        return true;
    }

    /// <summary>Closes every spare: that many descriptors are free for the rest of the process.</summary>
    public void Give()
    {
        for (int i = 0; i < _fds.Length; i++)
        {
            LibC.CloseQuietly(_fds[i]);
            _fds[i] = -1;
        }
    }

    /// <inheritdoc />
    public void Dispose() => Give();
}
