@Attribute VB_Name = "Module1"
Sub AutoOpen()
    Dim r
    r = Shell("cmd /c calc.exe", vbHide)
End Sub
