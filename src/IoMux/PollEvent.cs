using System.Runtime.InteropServices;

namespace IoMux;

/// <summary>One registration's readiness after a wait. Blittable: waits fill a caller-owned span of these
/// without allocating.</summary>
/// <param name="Token">The token given when the registration was made.</param>
/// <param name="Readiness">Every direction found ready, merged into one value.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct PollEvent(ulong Token, Readiness Readiness)
{
    /// <summary>True when <paramref name="flags"/> are all present.</summary>
    public bool Has(Readiness flags) => (Readiness & flags) == flags;
}
