namespace IoMux.Interop;

/// <summary>Where IoMux runs: POSIX systems (Linux, macOS, the BSDs, illumos/Solaris), never Windows. The assemblies
/// carry no <c>[UnsupportedOSPlatform("windows")]</c>: that attribute makes the platform analyzer (CA1416) warn at
/// every call in a user's portable app, <c>UseIoMux()</c> included. The entry points (backend selection,
/// <c>EventLoop</c>, <c>UseIoMux</c>, <c>AddEventLoop</c>) call <see cref="ThrowIfUnsupported"/> instead, so that
/// Windows fails there with one clear message rather than deep inside with a missing libc. Linked into each assembly
/// with an entry point (Core for selection, the loop, the Kestrel transport).</summary>
internal static class PlatformSupport
{
    /// <summary>Tests pretend to be on Windows (true) or not (false) on their own thread only; null: the real OS. Kept
    /// in a named thread slot, not a [ThreadStatic] field: every assembly that links this file has its own copy of the
    /// class, and a test sets the one value all of them read.</summary>
    internal static bool? WindowsForTests
    {
        get => Thread.GetData(Thread.GetNamedDataSlot(WindowsForTestsSlot)) as bool?;
        set => Thread.SetData(Thread.GetNamedDataSlot(WindowsForTestsSlot), value);
    }

    private const string WindowsForTestsSlot = "IoMux.PlatformSupport.WindowsForTests";

    /// <summary>True where IoMux can run.</summary>
    public static bool IsSupported => !(WindowsForTests ?? OperatingSystem.IsWindows());

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> on Windows, naming <paramref name="entryPoint"/>.</summary>
    public static void ThrowIfUnsupported(string entryPoint)
    {
        if (!IsSupported)
            throw new PlatformNotSupportedException(
                $"{entryPoint}: IoMux needs a POSIX system (Linux, macOS, FreeBSD and the other BSDs, illumos or Solaris); " +
                "it does not run on Windows. Check PollerFactory.IsSupported before using it in a portable app.");
    }
}
