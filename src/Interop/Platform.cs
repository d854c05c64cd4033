using System.Runtime.InteropServices;

namespace IoMux.Interop;

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
